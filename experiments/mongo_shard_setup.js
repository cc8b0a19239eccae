// Enable sharding of the wsim message store on a real sharded MongoDB cluster (run against a mongos).
//
//   mongosh "mongodb://<mongos host>:27017" --eval 'var DB = "wsim", PREFIX = ""' experiments/mongo_shard_setup.js
//
// DB and PREFIX must match strategies.store.messages.database / collection_prefix (and the warm tier's, if it is a
// Mongo store: run again with its prefix, e.g. PREFIX = "warm_"). Safe to run twice. Run it before the first
// server start (on empty collections) or after: on a non-empty collection the indexes below must exist first,
// which the script ensures.
//
// Shard keys (docs/database.md, "MongoDB"):
//   messages       {conv: "hashed"}  all of a conversation on one shard: a history page and a seq allocation
//                                    touch one shard; hashing spreads conversations evenly whatever their ids.
//   conversations  {_id: "hashed"}   the per-conversation counter document (_id is the conversation id).
//   marks          {conv: "hashed"}  receipts are read per conversation (get_marks) and written with the
//                                    conversation in the filter.
//   dead_letters   not sharded       small, admin-only.
// Unique indexes {conv: 1, seq: 1} and {conv: 1, dk: 1} have the shard key's field as prefix, which is what
// MongoDB requires to enforce uniqueness across a sharded collection (the check compares field names, so it
// holds for the hashed key too). If a server version refuses them with a hashed key, shard messages on the
// ranged key {conv: 1} instead (same locality, ranges instead of hashes): set RANGED = true.

const dbName = typeof DB !== "undefined" ? DB : "wsim";
const prefix = typeof PREFIX !== "undefined" ? PREFIX : "";
const ranged = typeof RANGED !== "undefined" ? RANGED : false;
const d = db.getSiblingDB(dbName);

function ensure(coll, key, options) {
  const res = d.getCollection(coll).createIndex(key, options || {});
  print(`index ${dbName}.${coll} ${JSON.stringify(key)}: ${JSON.stringify(res.note || res.ok)}`);
}

function shard(coll, key) {
  const ns = `${dbName}.${coll}`;
  const info = d.getSiblingDB("config").collections.findOne({ _id: ns });
  if (info && !info.dropped) {
    print(`${ns} already sharded on ${JSON.stringify(info.key)}`);
    return;
  }
  printjson(sh.shardCollection(ns, key));
}

sh.enableSharding(dbName); // implicit since 6.0; required before

const messages = `${prefix}messages`;
ensure(messages, { conv: 1, seq: 1 }, { unique: true, name: "conv_seq" });
ensure(messages, { conv: 1, dk: 1 }, { unique: true, name: "conv_dk" });
ensure(messages, { ts: 1 }, { name: "ts" });
ensure(messages, ranged ? { conv: 1 } : { conv: "hashed" }, { name: ranged ? "conv" : "conv_hashed" });
shard(messages, ranged ? { conv: 1 } : { conv: "hashed" });

const conversations = `${prefix}conversations`;
ensure(conversations, { _id: "hashed" }, { name: "id_hashed" });
shard(conversations, { _id: "hashed" });

const marks = `${prefix}marks`;
ensure(marks, { conv: 1 }, { name: "conv" });
ensure(marks, { conv: "hashed" }, { name: "conv_hashed" });
shard(marks, { conv: "hashed" });

// Durability of "sent": the store writes with w: "majority", j: true (strategies.store.messages.write_concern).
printjson(sh.status());
