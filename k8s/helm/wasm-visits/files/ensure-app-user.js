// Idempotent: create the application user, or reset its password/roles to the Secret's.
const dbName = process.env.MONGO_APP_DATABASE || "visits";
const user = process.env.MONGO_APP_USERNAME;
const pwd = process.env.MONGO_APP_PASSWORD;
if (!user || !pwd) { throw new Error("MONGO_APP_USERNAME / MONGO_APP_PASSWORD not set"); }
const appDb = db.getSiblingDB(dbName);
const roles = [{ role: "readWrite", db: dbName }];
if (appDb.getUser(user) === null) {
  appDb.createUser({ user: user, pwd: pwd, roles: roles });
  print("created user " + user + " on " + dbName);
} else {
  appDb.updateUser(user, { pwd: pwd, roles: roles });
  print("updated user " + user + " on " + dbName);
}
