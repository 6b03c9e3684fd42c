-- The machine's Postgres ceiling: what this server commits at all, one row per transaction
-- (autocommit), at the client count of the gateway runs. `cargo xtask bench` creates the table
-- `one_row (id BIGSERIAL PRIMARY KEY, payload TEXT)` in a scratch schema and runs this with
-- `pgbench -n -M prepared`. Nothing of DAEF is in it: a task costs at least this much.
INSERT INTO one_row (payload) VALUES ('daef-bench');
