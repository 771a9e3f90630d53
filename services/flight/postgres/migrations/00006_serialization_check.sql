-- +goose Up
-- serialization_check fails the statement that calls it with a serialization failure (40001)
-- unless ok. A statement sent in the same round trip as its transaction's COMMIT cannot have its
-- result checked by the client first; with this it checks itself, and when it fails the COMMIT
-- behind it never runs and the caller retries the transaction as for any serialization failure.
-- +goose StatementBegin
CREATE FUNCTION serialization_check(ok boolean, message text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	IF NOT ok THEN
		RAISE EXCEPTION USING ERRCODE = 'serialization_failure', MESSAGE = message;
	END IF;
	RETURN true;
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION serialization_check(boolean, text);
