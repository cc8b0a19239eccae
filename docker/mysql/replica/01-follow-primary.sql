-- GTID auto-positioning: the replica asks the primary for every transaction it has not applied yet.
-- GET_SOURCE_PUBLIC_KEY lets caching_sha2_password authenticate without TLS on this private network.
CHANGE REPLICATION SOURCE TO
  SOURCE_HOST = 'mysql-primary',
  SOURCE_PORT = 3306,
  SOURCE_USER = 'repl',
  SOURCE_PASSWORD = 'wsim-repl',
  SOURCE_AUTO_POSITION = 1,
  GET_SOURCE_PUBLIC_KEY = 1;
START REPLICA;
-- A replica takes writes only from replication. Set here, not as --super-read-only on the command line: the
-- image's init server runs with the command's arguments and could not create the root account under it.
-- PERSIST writes mysqld-auto.cnf in the data directory, so the real server starts read-only from now on.
SET PERSIST read_only = ON;
SET PERSIST super_read_only = ON;
