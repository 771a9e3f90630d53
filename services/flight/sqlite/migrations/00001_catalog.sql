-- +goose Up
-- The SQLite form of services/flight/postgres/migrations/00001_catalog.sql. Times are UTC
-- text 'YYYY-MM-DD HH:MM:SS.ffffff', microseconds at fixed width (package sqlite, timeFormat):
-- text of one width sorts in time order, so ORDER BY, range filters and the CHECKs below
-- compare times correctly, and microseconds are what PostgreSQL keeps, so both adapters
-- round-trip a time alike. AUTOINCREMENT keeps a deleted row's id from being reused, as
-- PostgreSQL's identity columns do: ids travel in events and URLs.
CREATE TABLE cities (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    country    TEXT NOT NULL CHECK (length(country) BETWEEN 1 AND 100),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f000', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f000', 'now')),
    UNIQUE (name, country)
);

CREATE TABLE airports (
    code       TEXT PRIMARY KEY CHECK (length(code) = 3 AND code NOT GLOB '*[^A-Z]*'),
    name       TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    city_id    INTEGER NOT NULL REFERENCES cities (id) ON DELETE RESTRICT,
    address    TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f000', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f000', 'now'))
);
CREATE INDEX airports_city_id ON airports (city_id);

-- cabins is the layout as JSON: [{"class":"economy","rows":30,"seats_per_row":6}, ...].
CREATE TABLE airplanes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    model      TEXT NOT NULL CHECK (length(model) BETWEEN 1 AND 100),
    capacity   INTEGER NOT NULL CHECK (capacity > 0),
    cabins     TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(cabins)),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f000', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f000', 'now'))
);

-- A flight carries its own seat inventory: available + held + sold = total_seats at all times,
-- enforced here as well as in the code, so no bug can oversell. The domain checks the flight
-- number's exact form; GLOB has no repetition, so the table checks its alphabet and length.
CREATE TABLE flights (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    flight_number     TEXT NOT NULL CHECK (length(flight_number) BETWEEN 3 AND 8 AND flight_number NOT GLOB '*[^A-Z0-9]*'),
    airplane_id       INTEGER NOT NULL REFERENCES airplanes (id) ON DELETE RESTRICT,
    departure_airport TEXT NOT NULL REFERENCES airports (code) ON DELETE RESTRICT,
    arrival_airport   TEXT NOT NULL REFERENCES airports (code) ON DELETE RESTRICT,
    departure_time    TEXT NOT NULL,
    arrival_time      TEXT NOT NULL,
    fare_amount       INTEGER NOT NULL CHECK (fare_amount > 0),
    currency          TEXT NOT NULL CHECK (length(currency) = 3 AND currency NOT GLOB '*[^A-Z]*'),
    boarding_gate     TEXT NOT NULL DEFAULT '',
    status            TEXT NOT NULL DEFAULT 'scheduled' CHECK (status IN ('scheduled', 'cancelled')),
    total_seats       INTEGER NOT NULL CHECK (total_seats > 0),
    available_seats   INTEGER NOT NULL CHECK (available_seats >= 0),
    held_seats        INTEGER NOT NULL DEFAULT 0 CHECK (held_seats >= 0),
    sold_seats        INTEGER NOT NULL DEFAULT 0 CHECK (sold_seats >= 0),
    version           INTEGER NOT NULL DEFAULT 1,
    created_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f000', 'now')),
    updated_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f000', 'now')),
    CONSTRAINT flights_seats_balance CHECK (available_seats + held_seats + sold_seats = total_seats),
    CONSTRAINT flights_distinct_airports CHECK (departure_airport <> arrival_airport),
    CONSTRAINT flights_arrival_after_departure CHECK (arrival_time > departure_time)
);
-- The same indexes as PostgreSQL's, for the same searches.
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
