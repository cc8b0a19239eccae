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
