// A real Better Auth server for the integration tests: email + password, the jwt() and bearer() plugins,
// everything held in memory (the built-in memory adapter needs no migrations).
//
// Environment: PORT, BETTER_AUTH_SECRET (>= 32 chars), BASE_URL (e.g. http://127.0.0.1:PORT).
// Prints `better-auth ready on <BASE_URL>` once listening; exits 0 on SIGTERM / SIGINT.
//
// Test-only admin route (outside /api/auth, loopback only, needs `x-test-admin: <BETTER_AUTH_SECRET>`):
//   POST /__test/rotate-jwks  -> marks every current signing key expired, as the jwt plugin's own
//   `jwks.rotationInterval` would. The next JWT is signed by a freshly minted key, and the old keys stay
//   published in /api/auth/jwks for the plugin's `jwks.gracePeriod` (default 30 days). Answers
//   {"rotated": <number of keys expired>}.
import { createServer } from "node:http";
import { timingSafeEqual } from "node:crypto";
import { betterAuth } from "better-auth";
import { memoryAdapter } from "better-auth/adapters/memory";
import { toNodeHandler } from "better-auth/node";
import { bearer, jwt } from "better-auth/plugins";

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} must be set`);
    process.exit(2);
  }
  return value;
}

const port = Number.parseInt(required("PORT"), 10);
const secret = required("BETTER_AUTH_SECRET");
const baseURL = required("BASE_URL").replace(/\/+$/, "");

// Every table the core and the jwt plugin use; the memory adapter keeps rows in these arrays.
const db = { user: [], session: [], account: [], verification: [], jwks: [] };

const auth = betterAuth({
  baseURL,
  secret,
  database: memoryAdapter(db),
  emailAndPassword: { enabled: true, autoSignIn: true },
  trustedOrigins: [baseURL, "http://127.0.0.1:*", "http://localhost:*"],
  // No rate limit: the test suite signs up many users from one address.
  rateLimit: { enabled: false },
  telemetry: { enabled: false },
  plugins: [jwt(), bearer()],
});

const authHandler = toNodeHandler(auth);

function isAdmin(req) {
  const given = Buffer.from(String(req.headers["x-test-admin"] ?? ""));
  const expected = Buffer.from(secret);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

function rotateJwks() {
  const now = new Date(Date.now() - 1000);
  let rotated = 0;
  for (const key of db.jwks) {
    if (!key.expiresAt || key.expiresAt > now) {
      key.expiresAt = now;
      rotated += 1;
    }
  }
  return rotated;
}

const server = createServer((req, res) => {
  if (req.url === "/__test/rotate-jwks") {
    if (req.method !== "POST" || !isAdmin(req)) {
      res.writeHead(403, { "content-type": "application/json" }).end('{"error":"forbidden"}');
      return;
    }
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ rotated: rotateJwks() }));
    return;
  }
  authHandler(req, res);
});

server.listen(port, "127.0.0.1", () => {
  console.log(`better-auth ready on ${baseURL}`);
});

function shutdown(signal) {
  server.close(() => process.exit(0));
  server.closeAllConnections?.();
  setTimeout(() => {
    console.error(`better-auth: forced exit after ${signal}`);
    process.exit(0);
  }, 3000).unref();
}
process.on("SIGTERM", () => shutdown("SIGTERM"));
process.on("SIGINT", () => shutdown("SIGINT"));
