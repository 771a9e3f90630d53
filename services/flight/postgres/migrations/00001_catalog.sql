-- +goose Up
CREATE TABLE cities (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    country    text NOT NULL CHECK (length(country) BETWEEN 1 AND 100),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (name, country)
);

CREATE TABLE airports (
    code       char(3) PRIMARY KEY CHECK (code ~ '^[A-Z]{3}$'),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    city_id    bigint NOT NULL REFERENCES cities (id) ON DELETE RESTRICT,
    address    text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX airports_city_id ON airports (city_id);

-- cabins is the layout: [{"class":"economy","rows":30,"seats_per_row":6}, ...]; capacity is
-- the sum of rows * seats_per_row, checked by the domain when the airplane is written.
CREATE TABLE airplanes (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model      text NOT NULL CHECK (length(model) BETWEEN 1 AND 100),
    capacity   integer NOT NULL CHECK (capacity > 0),
    cabins     jsonb NOT NULL DEFAULT '[]',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- A flight carries its own seat inventory: available + held + sold = total_seats at all times,
-- enforced here as well as in the code, so no bug can oversell.
CREATE TABLE flights (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    flight_number     text NOT NULL CHECK (flight_number ~ '^[A-Z0-9]{2,3}[0-9]{1,4}[A-Z]?$'),
    airplane_id       bigint NOT NULL REFERENCES airplanes (id) ON DELETE RESTRICT,
    departure_airport char(3) NOT NULL REFERENCES airports (code) ON DELETE RESTRICT,
    arrival_airport   char(3) NOT NULL REFERENCES airports (code) ON DELETE RESTRICT,
    departure_time    timestamptz NOT NULL,
    arrival_time      timestamptz NOT NULL,
    fare_amount       bigint NOT NULL CHECK (fare_amount > 0),
    currency          char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    boarding_gate     text NOT NULL DEFAULT '',
    status            text NOT NULL DEFAULT 'scheduled' CHECK (status IN ('scheduled', 'cancelled')),
    total_seats       integer NOT NULL CHECK (total_seats > 0),
    available_seats   integer NOT NULL CHECK (available_seats >= 0),
    held_seats        integer NOT NULL DEFAULT 0 CHECK (held_seats >= 0),
    sold_seats        integer NOT NULL DEFAULT 0 CHECK (sold_seats >= 0),
    version           bigint NOT NULL DEFAULT 1,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT flights_seats_balance CHECK (available_seats + held_seats + sold_seats = total_seats),
    CONSTRAINT flights_distinct_airports CHECK (departure_airport <> arrival_airport),
    CONSTRAINT flights_arrival_after_departure CHECK (arrival_time > departure_time)
);
-- Search filters on route and departure day and sorts by departure time or fare; the id ends
-- each key so cursor pagination has a stable, unique order. The route indexes serve a search
-- with from and to; flights_departure and flights_fare serve one without a route ("every
-- flight on 1 December", "the cheapest flights anywhere"), which would otherwise sort the
-- whole table. The seat counters are in no index, so the updates of holds stay HOT.
-- services/flight/postgres/search_test.go checks the plans on 100k flights.
CREATE INDEX flights_route_departure ON flights (departure_airport, arrival_airport, departure_time, id);
CREATE INDEX flights_route_fare ON flights (departure_airport, arrival_airport, fare_amount, id);
CREATE INDEX flights_departure ON flights (departure_time, id);
CREATE INDEX flights_fare ON flights (fare_amount, id);
CREATE INDEX flights_airplane_id ON flights (airplane_id);
CREATE INDEX flights_arrival_airport ON flights (arrival_airport);

-- +goose Down
DROP TABLE flights;
DROP TABLE airplanes;
DROP TABLE airports;
DROP TABLE cities;
