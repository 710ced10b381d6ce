// The metabase `posthorn init` writes: every engine's listeners at the standard ports plus an
// offset (so a home lab can run beside another server, or tests on high ports).
import type { MetabaseInput } from "./schema.ts";

export interface InitOptions {
  domain: string;
  hostname?: string;
  bind?: string;
  portOffset?: number;
}

export function initialMetabase(opts: InitOptions): MetabaseInput {
  const bind = opts.bind ?? "127.0.0.1";
  const off = opts.portOffset ?? 0;
  const at = (port: number) => port + off;
  const loopback = bind === "127.0.0.1" || bind === "::1" || bind === "localhost";
  return {
    $schema: "./metabase.schema.json",
    server: { hostname: opts.hostname ?? (loopback ? "localhost" : `mail.${opts.domain}`) },
    domains: [{ name: opts.domain.toLowerCase() }],
    smtp: {
      connectors: [
        { name: "mx", bind, port: at(25), tls: "starttls", role: "mx", auth: "optional" },
        {
          name: "submission",
          bind,
          port: at(587),
          tls: "starttls",
          role: "submission",
          auth: "required",
        },
        {
          name: "submissions",
          bind,
          port: at(465),
          tls: "implicit",
          role: "submission",
          auth: "required",
        },
      ],
    },
    pop3: {
      listeners: [
        { name: "pop3", bind, port: at(110), tls: "starttls" },
        { name: "pop3s", bind, port: at(995), tls: "implicit" },
      ],
    },
    imap: {
      listeners: [
        { name: "imap", bind, port: at(143), tls: "starttls" },
        { name: "imaps", bind, port: at(993), tls: "implicit" },
      ],
    },
    nntp: {
      listeners: [
        { name: "nntp", bind, port: at(119), tls: "starttls" },
        { name: "nntps", bind, port: at(563), tls: "implicit" },
      ],
    },
    http: {
      listeners: [
        { name: "http", bind, port: at(80), tls: "none" },
        { name: "https", bind, port: at(443), tls: "implicit" },
      ],
    },
  };
}
