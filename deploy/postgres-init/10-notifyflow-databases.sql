-- Runs once, when the postgres image initialises an empty data volume
-- (/docker-entrypoint-initdb.d). Later restarts skip it: changing it needs a fresh volume
-- or the same statements run by hand.
--
-- One role per consumer, so the application cannot touch Temporal's tables and back.
-- Passwords come from the container's environment (psql >= 15 \getenv), never from this file.

\getenv notifyflow_password NOTIFYFLOW_DB_PASSWORD
\getenv temporal_password TEMPORAL_DB_PASSWORD

-- notifyflow: the application's database (DATABASE_URL), migrated by `notifyflow db upgrade`.
CREATE ROLE notifyflow LOGIN PASSWORD :'notifyflow_password';
CREATE DATABASE notifyflow OWNER notifyflow;

-- temporal + temporal_visibility: Temporal's persistence and SQL visibility stores, whose
-- schema deploy/temporal-setup.sh installs and upgrades. CREATEDB lets that script's
-- idempotent `create` step run against a server where this file never ran.
CREATE ROLE temporal LOGIN CREATEDB PASSWORD :'temporal_password';
CREATE DATABASE temporal OWNER temporal;
CREATE DATABASE temporal_visibility OWNER temporal;
