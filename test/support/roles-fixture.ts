/**
 * A database whose objects are owned by several roles, with role memberships, column and default privileges,
 * row-level security policies naming roles, and per-database settings: the case `migration.roles` exists for.
 * Run SOURCE_SQL on the server, create database DB, run DATABASE_SQL in it, then DB_LEVEL_SQL.
 */
export const DB = 'shop';
export const APP_PW = 'app-secret-pw-4711';
export const ANALYST_PW = 'analyst-secret-pw-0815';
export const READER_PW = 'src-reader-pw-1234';

export const SOURCE_SQL = `
  CREATE ROLE app_owner NOLOGIN;
  CREATE ROLE auditor NOLOGIN;
  CREATE ROLE app_reader NOLOGIN;
  CREATE ROLE app_writer NOLOGIN IN ROLE app_reader;
  CREATE ROLE app_group NOLOGIN;
  CREATE ROLE app LOGIN PASSWORD '${APP_PW}' CONNECTION LIMIT 7 VALID UNTIL '2031-01-01 00:00:00+00' IN ROLE app_writer;
  GRANT app_group TO app WITH ADMIN OPTION;
  ALTER ROLE app SET statement_timeout = '30s';
  COMMENT ON ROLE app IS E'the shop''s application;\\n-- logs in';
  CREATE ROLE analyst LOGIN PASSWORD '${ANALYST_PW}';
  CREATE ROLE tenant_admin NOLOGIN BYPASSRLS REPLICATION CREATEDB;
  CREATE ROLE "Mixed Case; ro""le" NOLOGIN;
  CREATE ROLE settings_only NOLOGIN;
  CREATE ROLE unrelated NOLOGIN;
  CREATE ROLE src_reader LOGIN PASSWORD '${READER_PW}';
`;

export const DATABASE_SQL = `
  REVOKE ALL ON SCHEMA public FROM PUBLIC;
  CREATE SCHEMA app AUTHORIZATION app_owner;
  CREATE SCHEMA audit AUTHORIZATION auditor;
  SET ROLE app_owner;
  CREATE TYPE app.mood AS ENUM ('happy', 'sad');
  CREATE TABLE app.accounts (id int PRIMARY KEY, tenant text NOT NULL, balance numeric NOT NULL DEFAULT 0, mood app.mood);
  INSERT INTO app.accounts SELECT g, 'tenant' || (g % 3), g * 10 FROM generate_series(1, 50) g;
  CREATE SEQUENCE app.ticket_seq;
  CREATE FUNCTION app.balance_of(int) RETURNS numeric LANGUAGE sql STABLE AS 'SELECT balance FROM app.accounts WHERE id = $1';
  REVOKE ALL ON FUNCTION app.balance_of(int) FROM PUBLIC;
  GRANT EXECUTE ON FUNCTION app.balance_of(int) TO app;
  GRANT USAGE ON SCHEMA app TO app_reader;
  GRANT SELECT ON app.accounts TO app_reader;
  GRANT INSERT, UPDATE ON app.accounts TO app_writer;
  GRANT SELECT (id) ON app.accounts TO "Mixed Case; ro""le";
  GRANT USAGE ON SEQUENCE app.ticket_seq TO app_writer;
  REVOKE ALL ON TYPE app.mood FROM PUBLIC;
  GRANT USAGE ON TYPE app.mood TO app_reader;
  ALTER DEFAULT PRIVILEGES IN SCHEMA app GRANT SELECT ON TABLES TO app_reader;
  ALTER TABLE app.accounts ENABLE ROW LEVEL SECURITY;
  CREATE POLICY tenant_read ON app.accounts FOR SELECT TO analyst, app_reader USING (tenant = current_user);
  CREATE POLICY writer_all ON app.accounts TO app_writer USING (true) WITH CHECK (balance >= 0);
  RESET ROLE;
  SET ROLE auditor;
  CREATE TABLE audit.log (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT '2024-01-01', what text);
  INSERT INTO audit.log (what) VALUES ('created'), ('paid');
  GRANT SELECT ON audit.log TO tenant_admin;
  RESET ROLE;
`;

export const DB_LEVEL_SQL = `
  ALTER DATABASE ${DB} SET work_mem = '8MB';
  ALTER DATABASE ${DB} SET search_path = app, "$user", public;
  ALTER ROLE app IN DATABASE ${DB} SET search_path = app, public;
  ALTER ROLE settings_only IN DATABASE ${DB} SET work_mem = '16MB';
  REVOKE CONNECT ON DATABASE ${DB} FROM PUBLIC;
  GRANT CONNECT ON DATABASE ${DB} TO app, src_reader;
  COMMENT ON DATABASE ${DB} IS 'the shop';
`;
