// A test-only ClickHouse HTTP endpoint in front of the real ClickHouse engine
// that the npm package chdb embeds (libchdb.so of @chdb/lib-linux-x64-gnu).
// Started by servertest.ClickHouse; not part of the tool.
//
// It speaks the part of ClickHouse's HTTP interface that clickhouse-go/v2
// uses with Protocol: HTTP: POST / with the query as the body, the URL
// parameters database, default_format, client_protocol_version, query_id
// and param_<name>, authentication by X-ClickHouse-User/X-ClickHouse-Key or
// HTTP basic auth, and errors as ClickHouse sends them (a non-200 status,
// X-ClickHouse-Exception-Code, "Code: N. DB::Exception: ..." as the body).
// Every statement runs in the engine; nothing is answered by this file.
//
// One thing chdb cannot do: write Native at the client's protocol version
// (it writes revision 0, as clickhouse-local does). A real server writes, for
// client_protocol_version > 0, a block-info header before each block and, from
// revision 54454, a custom-serialization flag after each column's type. This
// file adds both to chdb's own Native output, so the client decodes exactly
// what a server sends; columns of types it cannot measure are refused with an
// error, never guessed.
//
// Environment: CH_PORT, CH_DATA (data directory), CH_USER and CH_PASSWORD
// (the one account; CH_USER empty: "default" without a password), and
// CH_TLS_CERT/CH_TLS_KEY to serve HTTPS.
"use strict";

const http = require("http");
const https = require("https");
const fs = require("fs");
const { Session } = require("chdb");

const port = Number(process.env.CH_PORT || 8123);
const user = process.env.CH_USER || "default";
const password = process.env.CH_PASSWORD || "";
const session = new Session(process.env.CH_DATA);

const CUSTOM_SERIALIZATION = 54454;

// ---- Native stream: measure columns so the header fields can be added ----

class Reader {
  constructor(buf) { this.buf = buf; this.pos = 0; }
  varint() {
    let v = 0n, shift = 0n;
    for (;;) {
      if (this.pos >= this.buf.length) throw new Error("truncated Native stream");
      const b = this.buf[this.pos++];
      v |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return Number(v);
      shift += 7n;
    }
  }
  str() { const n = this.varint(); const s = this.buf.toString("utf8", this.pos, this.pos + n); this.pos += n; return s; }
  skip(n) { if (this.pos + n > this.buf.length) throw new Error("truncated Native stream"); this.pos += n; }
}

const FIXED = {
  UInt8: 1, Int8: 1, Bool: 1, Enum8: 1, UInt16: 2, Int16: 2, Date: 2, Enum16: 2,
  UInt32: 4, Int32: 4, Float32: 4, DateTime: 4, Date32: 4, IPv4: 4,
  UInt64: 8, Int64: 8, Float64: 8, DateTime64: 8,
  UInt128: 16, Int128: 16, UUID: 16, IPv6: 16, UInt256: 32, Int256: 32,
};

// splitArgs splits "A, B(C, D), E" at top-level commas.
function splitArgs(s) {
  const out = []; let depth = 0, start = 0, quote = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === "'" && s[i - 1] !== "\\") quote = !quote;
    if (quote) continue;
    if (c === "(") depth++;
    if (c === ")") depth--;
    if (c === "," && depth === 0) { out.push(s.slice(start, i).trim()); start = i + 1; }
  }
  out.push(s.slice(start).trim());
  return out;
}

// skipColumn moves r past n values of type t (Native, revision 0).
function skipColumn(r, t, n) {
  const m = /^(\w+)(?:\((.*)\))?$/s.exec(t.trim());
  if (!m) throw new Error(`unsupported type ${t}`);
  const [, name, args] = m;
  if (name in FIXED) return r.skip(FIXED[name] * n);
  switch (name) {
    case "String":
      for (let i = 0; i < n; i++) r.skip(r.varint());
      return;
    case "FixedString":
      return r.skip(Number(args) * n);
    case "Decimal": {
      const p = Number(splitArgs(args)[0]);
      return r.skip((p <= 9 ? 4 : p <= 18 ? 8 : p <= 38 ? 16 : 32) * n);
    }
    case "Nullable":
      r.skip(n);
      return skipColumn(r, args, n);
    case "Array": {
      if (n === 0) return;
      r.skip(8 * (n - 1));
      const total = Number(r.buf.readBigUInt64LE(r.pos)); r.skip(8);
      return skipColumn(r, args, total);
    }
    case "Tuple":
      for (const a of splitArgs(args)) skipColumn(r, a.replace(/^[A-Za-z_][\w]*\s+(?=[A-Z])/, ""), n);
      return;
    case "Map":
      return skipColumn(r, `Array(Tuple(${args}))`, n);
  }
  throw new Error(`type ${t} is not supported by the test endpoint`);
}

// toClientRevision rewrites chdb's revision-0 Native output as a server
// writes it for a client of the given protocol revision.
function toClientRevision(buf, revision) {
  if (revision <= 0 || buf.length === 0) return buf;
  const r = new Reader(buf);
  const parts = [];
  const blockInfo = Buffer.from([1, 0, 2, 0xff, 0xff, 0xff, 0xff, 0]);
  while (r.pos < buf.length) {
    parts.push(blockInfo);
    let from = r.pos;
    const cols = r.varint();
    const rows = r.varint();
    for (let c = 0; c < cols; c++) {
      r.str();
      const type = r.str();
      if (revision >= CUSTOM_SERIALIZATION) {
        parts.push(buf.subarray(from, r.pos), Buffer.from([0]));
        from = r.pos;
      }
      skipColumn(r, type, rows);
    }
    parts.push(buf.subarray(from, r.pos));
  }
  return Buffer.concat(parts);
}

// ---- HTTP ----

// exception answers as ClickHouse does: the code in a header, the text in
// the body, a 4xx/5xx status.
function exception(res, code, text) {
  const status = { 60: 404, 81: 404, 62: 400, 516: 401, 497: 403 }[code] || 500;
  if (!/^Code: \d+\./.test(text)) text = `Code: ${code}. DB::Exception: ${text}`;
  res.writeHead(status, {
    "Content-Type": "text/plain; charset=UTF-8",
    "X-ClickHouse-Exception-Code": String(code),
  });
  res.end(text + "\n");
}

function credentials(req, url) {
  let u = req.headers["x-clickhouse-user"], p = req.headers["x-clickhouse-key"];
  const auth = req.headers.authorization || "";
  if (u === undefined && auth.startsWith("Basic ")) {
    const dec = Buffer.from(auth.slice(6), "base64").toString("utf8");
    const i = dec.indexOf(":");
    u = i < 0 ? dec : dec.slice(0, i); p = i < 0 ? "" : dec.slice(i + 1);
  }
  if (u === undefined) { u = url.searchParams.get("user") || "default"; p = url.searchParams.get("password") || ""; }
  return [u, p || ""];
}

let queue = Promise.resolve();

// run executes one request's statement in the engine, one at a time: the
// current database is session state.
function run(database, sql, params, format) {
  const job = queue.then(async () => {
    if (database) await session.queryAsync(`USE \`${database.replace(/`/g, "\\`")}\``, { format: "TabSeparated" });
    const r = Object.keys(params).length > 0
      ? await session.queryBindAsync(sql, params, { format })
      : await session.queryAsync(sql, { format });
    return r.bytes();
  });
  queue = job.catch(() => {});
  return job;
}

async function handle(req, res) {
  const url = new URL(req.url, "http://localhost");
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const [u, p] = credentials(req, url);
  if (u !== user || p !== password) {
    return exception(res, 516, `${u}: Authentication failed: password is incorrect, or there is no user with such name. (AUTHENTICATION_FAILED)`);
  }
  let sql = url.searchParams.get("query") || "";
  const body = Buffer.concat(chunks).toString("utf8");
  if (body) sql = sql ? sql + "\n" + body : body;
  if (url.pathname === "/ping" || (url.pathname === "/" && req.method === "GET" && !sql)) {
    res.writeHead(200, { "Content-Type": "text/plain" });
    return res.end("Ok.\n");
  }
  const params = {};
  for (const [k, v] of url.searchParams) if (k.startsWith("param_")) params[k.slice(6)] = v;
  const format = url.searchParams.get("default_format") || "TabSeparated";
  const revision = Number(url.searchParams.get("client_protocol_version") || 0);
  try {
    let out = Buffer.from(await run(url.searchParams.get("database"), sql, params, format));
    if (format === "Native") out = toClientRevision(out, revision);
    res.writeHead(200, {
      "Content-Type": format === "Native" ? "application/octet-stream" : "text/plain; charset=UTF-8",
      "Content-Length": out.length,
      "X-ClickHouse-Format": format,
      "X-ClickHouse-Query-Id": url.searchParams.get("query_id") || "",
      "X-ClickHouse-Summary": "{}",
    });
    res.end(out);
  } catch (e) {
    const msg = String(e && e.message || e).replace(/^Query failed: /, "");
    const m = /^Code: (\d+)\./.exec(msg);
    exception(res, e.clickhouseCode || (m ? Number(m[1]) : 1000), msg);
  }
}

const serve = (req, res) => handle(req, res).catch((e) => exception(res, 1000, String(e && e.stack || e)));
const server = process.env.CH_TLS_CERT
  ? https.createServer({ cert: fs.readFileSync(process.env.CH_TLS_CERT), key: fs.readFileSync(process.env.CH_TLS_KEY) }, serve)
  : http.createServer(serve);
server.listen(port, "127.0.0.1", () => console.log(`clickhouse_http listening on 127.0.0.1:${port}`));
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => { server.close(); session.close(); process.exit(0); });
