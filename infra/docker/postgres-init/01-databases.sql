-- Run once by the postgres image's entrypoint, when the `sources-postgres` volume is first created
-- (docker-entrypoint-initdb.d). Creates the databases and warehouse schemas the project's connections name:
--   totesys   : the totesys source (seeded separately);
--   warehouse : schemas landing (rows as landed), core (modelled tables), mart (data marts),
--               etl (the control plane: etl.audit, etl.task_log).
-- Tables are created by the project (DDL under sql/postgres/), not here.

CREATE DATABASE totesys;
CREATE DATABASE warehouse;

\connect warehouse

CREATE SCHEMA IF NOT EXISTS landing;
CREATE SCHEMA IF NOT EXISTS core;
CREATE SCHEMA IF NOT EXISTS mart;
CREATE SCHEMA IF NOT EXISTS etl;
