// Idempotent replica-set initiation, run against member 0 (directConnection).
const ns = process.env.POD_NAMESPACE || "wasm-visits";
const rsName = process.env.MONGO_REPLICA_SET || "rs0";
const domain = process.env.CLUSTER_DOMAIN || "cluster.local";
const count = parseInt(process.env.MONGO_MEMBERS || "3", 10);
const members = [];
for (let i = 0; i < count; i++) {
  // member 0 is preferred as primary; seeds of the Wasm clients follow the same order
  members.push({ _id: i, host: "mongo-" + i + ".mongo." + ns + ".svc." + domain + ":27017", priority: i === 0 ? 2 : 1 });
}
let initiated = true;
try {
  rs.status();
} catch (e) {
  if (e.codeName === "NotYetInitialized" || e.code === 94) { initiated = false; } else { throw e; }
}
if (initiated) {
  print("replica set already initiated: nothing to do");
} else {
  printjson(rs.initiate({ _id: rsName, members: members }));
}
