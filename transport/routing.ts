// Owns: choosing where mail for a domain goes, in order: a static route (the domain, then
// "*"), else the smarthost, else the domain's MX hosts in preference order, else its own A/AAAA
// (RFC 5321 §5.1). A null MX (RFC 7505) is a permanent failure.
import { Resolver } from "node:dns/promises";
import { readFile } from "node:fs/promises";
import type { Metabase } from "../metabase/schema.ts";
import type { HopTarget } from "./smtp-client.ts";

export interface MxRecord {
  exchange: string;
  priority: number;
}

/** What routing needs from DNS; tests pass their own. */
export interface MxResolver {
  /** Rejects with an Error carrying a node:dns `code` (ENODATA, ENOTFOUND, ETIMEOUT…). */
  resolveMx(domain: string): Promise<MxRecord[]>;
}

export interface RouteCandidate extends HopTarget {
  source: "route" | "smarthost" | "mx" | "address";
}

export type RoutePlan =
  | { ok: true; candidates: RouteCandidate[] }
  | {
    ok: false;
    temporary: boolean;
    status: string;
    error: string;
    /** DNS said the domain does not exist (NXDOMAIN): permanent once it has lasted a while. */
    unknownDomain?: boolean;
  };

/** node:dns with an explicit timeout and tries (see DESIGN.md: never the library defaults). */
export function dnsResolver(mb: Metabase): MxResolver {
  const resolver = new Resolver({
    timeout: mb.smtp.queue.dnsTimeoutSeconds * 1000,
    tries: mb.smtp.queue.dnsTries,
  });
  return { resolveMx: (d) => resolver.resolveMx(d) };
}

export type PasswordReader = (file: string) => Promise<string>;

/** The password file holds the password alone; one trailing newline is not part of it. */
export const readPasswordFile: PasswordReader = async (file) =>
  (await readFile(file, "utf8")).replace(/\r?\n$/, "");

export async function planRoute(
  domain: string,
  mb: Metabase,
  dns: MxResolver,
  readPassword: PasswordReader = readPasswordFile,
  /** The port of MX and address hosts: 25, the SMTP port (tests use another). */
  smtpPort = 25,
): Promise<RoutePlan> {
  const d = domain.toLowerCase();
  const routes = mb.smtp.routes;
  const route = routes.find((r) => r.domain.toLowerCase() === d) ??
    routes.find((r) => r.domain === "*");
  if (route) {
    return {
      ok: true,
      candidates: [{
        source: "route",
        host: route.host,
        port: route.port,
        tls: route.tls,
        verifyCertificate: route.verifyCertificate,
        auth: null,
      }],
    };
  }

  const smarthost = mb.smtp.smarthost;
  if (smarthost) {
    let auth: HopTarget["auth"] = null;
    if (smarthost.username !== null) {
      if (smarthost.passwordFile === null) {
        return {
          ok: false,
          temporary: true,
          status: "4.7.0",
          error: "smarthost.username is set but smarthost.passwordFile is not",
        };
      }
      try {
        auth = {
          username: smarthost.username,
          password: await readPassword(smarthost.passwordFile),
        };
      } catch (err) {
        return {
          ok: false,
          temporary: true,
          status: "4.3.0",
          error: `cannot read smarthost password file: ${(err as Error).message}`,
        };
      }
    }
    return {
      ok: true,
      candidates: [{
        source: "smarthost",
        host: smarthost.host,
        port: smarthost.port,
        tls: smarthost.tls,
        verifyCertificate: smarthost.verifyCertificate,
        auth,
      }],
    };
  }

  // RFC 5321 §4.1.3: a domain literal names the host itself.
  const literal = /^\[(?:ipv6:)?([^\]]+)\]$/i.exec(d);
  if (literal) return { ok: true, candidates: [direct(literal[1]!, "address", smtpPort)] };

  let records: MxRecord[];
  try {
    records = await dns.resolveMx(d);
  } catch (err) {
    const code = (err as { code?: string }).code;
    // RFC 5321 §5.1: no MX records at all → the domain itself is the one host (its A/AAAA).
    if (code === "ENODATA") return { ok: true, candidates: [direct(d, "address", smtpPort)] };
    // ENOTFOUND (NXDOMAIN) says the domain does not exist, but a resolver that is briefly
    // cut off (a captive portal, a broken forwarder) can say the same of every name: defer,
    // and let the runner bounce it once it has lasted smtp.queue.unknownDomainMinutes.
    return {
      ok: false,
      temporary: true,
      status: "4.4.3", // RFC 3463 §3.5: directory server failure
      error: `MX lookup for ${d} failed: ${code ?? (err as Error).message}`,
      unknownDomain: code === "ENOTFOUND",
    };
  }
  const isNull = (r: MxRecord) => r.exchange === "" || r.exchange === ".";
  // RFC 7505 §3: a single MX with an empty exchange means "this domain accepts no mail".
  if (records.length === 1 && isNull(records[0]!)) {
    return {
      ok: false,
      temporary: false,
      status: "5.1.10", // RFC 7505 §4.2
      error: `${d} accepts no mail (null MX, RFC 7505)`,
    };
  }
  const usable = records.filter((r) => !isNull(r));
  if (usable.length === 0) return { ok: true, candidates: [direct(d, "address", smtpPort)] };
  return {
    ok: true,
    candidates: byPreference(usable).map((r) => direct(r.exchange, "mx", smtpPort)),
  };
}

/** RFC 5321 §5.1: lowest preference first; hosts of equal preference in random order. */
export function byPreference(records: MxRecord[], random: () => number = Math.random): MxRecord[] {
  const keyed = records.map((r) => ({ r, k: random() }));
  keyed.sort((a, b) => a.r.priority - b.r.priority || a.k - b.k);
  return keyed.map((x) => x.r);
}

function direct(host: string, source: RouteCandidate["source"], port: number): RouteCandidate {
  return {
    source,
    host: host.replace(/\.$/, ""),
    port,
    tls: "opportunistic",
    verifyCertificate: false,
    auth: null,
  };
}
