-- +goose Up
-- next_version returns new_version when row_version equals read_version, and otherwise fails
-- the statement that calls it with SQLSTATE 45000 and message. An UPDATE of a booking sets
-- version = next_version(version, <version read under the row lock>, <new version>, '...'), so
-- the update checks its own guard on the server: the statements sent behind it in the same round
-- trip, its COMMIT among them, run only if the guard holds (services/booking/mysql, tx.save).
-- NO SQL: it reads and writes nothing, so a server with binary logging on accepts it without
-- log_bin_trust_function_creators. It reads the row's column, so it is never evaluated ahead
-- of the row as a constant.
-- +goose StatementBegin
CREATE FUNCTION next_version(row_version BIGINT, read_version BIGINT, new_version BIGINT, message VARCHAR(128))
    RETURNS BIGINT
    DETERMINISTIC NO SQL
BEGIN
    IF row_version <> read_version THEN
        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = message;
    END IF;
    RETURN new_version;
END
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION next_version;
