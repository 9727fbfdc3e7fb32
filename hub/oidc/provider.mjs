// A small OpenID Connect provider on loopback, for `consortium-lab hub` and the hub's tests.
//
// It is the npm package `oidc-provider` with its own login page: the package's development
// login accepts any password and fails on unknown users, so it is turned off and replaced by a
// form that checks a user list. Never expose it: plain http, one client, passwords in a file.
//
// Environment:
//   OIDC_PORT           port on 127.0.0.1 (required)
//   OIDC_CLIENT_ID      the hub's client id (required)
//   OIDC_CLIENT_SECRET  the hub's client secret (required)
//   OIDC_REDIRECT_URI   the hub's OAuth callback, e.g. http://127.0.0.1:8000/hub/oauth_callback
//   OIDC_USERS_FILE     JSON list of {"username", "password", "name"?, "email"?, "groups"?}
//                       (read at each login, so a test can add users while it runs)
//
// Endpoints (as GenericOAuthenticator needs them): /auth, /token, /me; /interaction/<uid> is
// the login page. Prints "oidc-provider listening on <issuer>" once it serves.

import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import querystring from "node:querystring";

import Provider from "oidc-provider";

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`oidc-provider: ${name} is not set`);
    process.exit(2);
  }
  return value;
}

const port = Number(required("OIDC_PORT"));
const issuer = `http://127.0.0.1:${port}`;
const usersFile = required("OIDC_USERS_FILE");

function users() {
  return JSON.parse(fs.readFileSync(usersFile, "utf8"));
}

function findUser(username) {
  return users().find((u) => u.username === username);
}

// Passwords are compared in constant time: this page is the test of a login, so it should
// behave as one.
function samePassword(given, expected) {
  const a = crypto.createHash("sha256").update(String(given)).digest();
  const b = crypto.createHash("sha256").update(String(expected)).digest();
  return crypto.timingSafeEqual(a, b);
}

const { privateKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: required("OIDC_CLIENT_ID"),
      client_secret: required("OIDC_CLIENT_SECRET"),
      redirect_uris: [required("OIDC_REDIRECT_URI")],
      grant_types: ["authorization_code"],
      response_types: ["code"],
    },
  ],
  jwks: { keys: [privateKey.export({ format: "jwk" })] },
  cookies: { keys: [crypto.randomBytes(32).toString("hex")] },
  claims: {
    openid: ["sub"],
    profile: ["name", "preferred_username"],
    email: ["email", "email_verified"],
    groups: ["groups"],
  },
  features: { devInteractions: { enabled: false } },
  ttl: {
    AccessToken: 3600,
    AuthorizationCode: 60,
    Grant: 3600,
    IdToken: 3600,
    Interaction: 600,
    Session: 3600,
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, sub) {
    const user = findUser(sub);
    if (!user) return undefined;
    return {
      accountId: sub,
      async claims() {
        return {
          sub,
          preferred_username: user.username,
          name: user.name ?? user.username,
          email: user.email ?? `${user.username}@example.invalid`,
          email_verified: true,
          groups: user.groups ?? [],
        };
      },
    };
  },
});

function escapeHtml(text) {
  return String(text).replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c],
  );
}

function loginPage(uid, error) {
  const message = error ? `<p role="alert" class="error">${escapeHtml(error)}</p>` : "";
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in · test provider</title>
<style>body{font-family:system-ui,sans-serif;max-width:22rem;margin:4rem auto}
label{display:block;margin:.8rem 0 .2rem}input{width:100%;padding:.4rem}
button{margin-top:1rem;padding:.5rem 1rem}.error{color:#b00020}</style></head>
<body><h1>Sign in</h1><p>Loopback test provider (consortium_lab).</p>${message}
<form method="post" action="/interaction/${escapeHtml(uid)}/login" autocomplete="off">
<label for="username">Username</label><input id="username" name="username" required autofocus>
<label for="password">Password</label><input id="password" name="password" type="password">
<button type="submit">Sign in</button></form></body></html>`;
}

function readForm(req) {
  return new Promise((resolve, reject) => {
    let body = "";
    req.on("data", (chunk) => {
      body += chunk;
      if (body.length > 10_000) reject(new Error("form too large"));
    });
    req.on("end", () => resolve(querystring.parse(body)));
    req.on("error", reject);
  });
}

function send(res, status, html) {
  res.writeHead(status, {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "frame-ancestors 'none'",
  });
  res.end(html);
}

// The consent step grants what the client asked for: this provider has one trusted client.
async function grantConsent(details) {
  const { prompt, params, session } = details;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(" "));
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  if (prompt.details.missingResourceScopes) {
    for (const [indicator, scope] of Object.entries(prompt.details.missingResourceScopes)) {
      grant.addResourceScope(indicator, scope.join(" "));
    }
  }
  return { consent: { grantId: await grant.save() } };
}

async function interaction(req, res) {
  const match = req.url.match(/^\/interaction\/([^/?]+)(\/login)?/);
  const uid = match[1];
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) return send(res, 400, "<p>Unknown sign-in attempt.</p>");
  if (details.prompt.name === "consent") {
    const result = await grantConsent(details);
    return provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
  }
  if (req.method === "GET") return send(res, 200, loginPage(uid));
  if (req.method === "POST" && match[2]) {
    const form = await readForm(req);
    const user = findUser(String(form.username ?? ""));
    if (!user || !samePassword(form.password ?? "", user.password)) {
      return send(res, 401, loginPage(uid, "Unknown user or wrong password."));
    }
    return provider.interactionFinished(
      req,
      res,
      { login: { accountId: user.username } },
      { mergeWithLastSubmission: false },
    );
  }
  return send(res, 405, "<p>Method not allowed.</p>");
}

const handle = provider.callback();
const server = http.createServer((req, res) => {
  if (req.url.startsWith("/interaction/")) {
    interaction(req, res).catch((err) => {
      console.error(err);
      if (!res.headersSent) send(res, 400, `<p>${escapeHtml(err.message)}</p>`);
    });
  } else {
    handle(req, res);
  }
});
server.listen(port, "127.0.0.1", () => console.log(`oidc-provider listening on ${issuer}`));
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
