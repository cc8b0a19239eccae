-- The account the replica reads the binary log with. Not replicated: the replica does not need it.
SET @@SESSION.SQL_LOG_BIN = 0;
CREATE USER IF NOT EXISTS 'repl'@'%' IDENTIFIED BY 'wsim-repl';
GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%';
SET @@SESSION.SQL_LOG_BIN = 1;
