// validate-k8s.mjs: check Kubernetes objects against the Kubernetes API's OpenAPI schema,
// offline. stdin: a JSON array of objects; stdout: a JSON array, one entry per object:
//   {"index", "kind", "name", "schema", "errors": [...], "unknown": [...]}
//
// The schema comes from the npm package kubernetes-models (its validators are compiled
// from the API server's OpenAPI document). They check types, required fields, enums and
// formats, but like the OpenAPI document they allow fields the schema does not name,
// while the API server (strict field validation, kubectl's default) rejects them: a typo
// such as `readinessprobe` would pass. So each object is validated through a proxy that
// records which fields the validator read; a field it never read is one the schema does
// not know, and is reported in "unknown". Fields under free-form maps (labels,
// annotations, ConfigMap data) are read by the validator's map check, so they count as
// known.
import { readFileSync } from "node:fs";

function schemaName(apiVersion, kind) {
  // apps/v1 -> IoK8sApiAppsV1<Kind>; v1 -> IoK8sApiCoreV1<Kind>;
  // networking.k8s.io/v1 -> IoK8sApiNetworkingV1<Kind>.
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["core", apiVersion];
  const g = group.replace(/\.k8s\.io$/, "").split(".")
    .map((p) => p.charAt(0).toUpperCase() + p.slice(1)).join("");
  const v = version.charAt(0).toUpperCase() + version.slice(1);
  return `IoK8sApi${g}${v}${kind}`;
}

function track(data, path, seen) {
  if (data === null || typeof data !== "object") return data;
  const inner = Array.isArray(data)
    ? data.map((v, i) => track(v, `${path}/${i}`, seen))
    : Object.fromEntries(Object.entries(data).map(([k, v]) => [k, track(v, `${path}/${k}`, seen)]));
  const note = (k) => { if (typeof k === "string") seen.add(`${path}/${k}`); };
  return new Proxy(inner, {
    get(t, k, r) { note(k); return Reflect.get(t, k, r); },
    has(t, k) { note(k); return Reflect.has(t, k); },
    getOwnPropertyDescriptor(t, k) { note(k); return Reflect.getOwnPropertyDescriptor(t, k); },
  });
}

function leafPaths(data, path, out) {
  if (data !== null && typeof data === "object") {
    for (const [k, v] of Object.entries(data)) {
      const p = `${path}/${k}`;
      out.push(p);
      leafPaths(v, p, out);
    }
  }
  return out;
}

const objects = JSON.parse(readFileSync(0, "utf8"));
const results = [];
for (const [index, obj] of objects.entries()) {
  const r = { index, kind: obj?.kind, name: obj?.metadata?.name, schema: null, errors: [], unknown: [] };
  results.push(r);
  if (!obj || typeof obj.apiVersion !== "string" || typeof obj.kind !== "string") {
    r.errors.push("apiVersion and kind are required");
    continue;
  }
  r.schema = schemaName(obj.apiVersion, obj.kind);
  let validate;
  try {
    ({ validate } = await import(`kubernetes-models/_schemas/${r.schema}`));
  } catch (e) {
    r.errors.push(`no schema for ${obj.apiVersion} ${obj.kind} (${r.schema})`);
    continue;
  }
  const seen = new Set();
  if (!validate(track(obj, "", seen))) {
    for (const e of validate.errors ?? [])
      r.errors.push(`${e.instancePath || "/"} ${e.message}${e.params ? " " + JSON.stringify(e.params) : ""}`);
    continue;
  }
  r.unknown = leafPaths(obj, "", []).filter((p) => !seen.has(p));
}
process.stdout.write(JSON.stringify(results, null, 1) + "\n");
