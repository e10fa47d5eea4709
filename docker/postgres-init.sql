-- Runs once, when the postgres volume is first created (docker-entrypoint-initdb.d), as
-- POSTGRES_USER. The application's database (POSTGRES_DB, "dangjian") exists already; Prefect
-- gets its own database, kept apart from the application's, with the pg_trgm extension it needs.
CREATE DATABASE prefect;
\connect prefect
CREATE EXTENSION IF NOT EXISTS pg_trgm;
