// CIDR matching for relayNetworks, and the Received: header's shape.
import { expect, test } from "bun:test";
import { receivedHeader, withProtocol } from "../../protocols/smtp/received.ts";
import { inAnyNetwork, inNetwork } from "../../protocols/smtp/relay.ts";

test("IPv4, IPv6 and IPv4-mapped addresses against CIDR ranges", () => {
  expect(inNetwork("10.1.2.3", "10.0.0.0/8")).toBe(true);
  expect(inNetwork("11.1.2.3", "10.0.0.0/8")).toBe(false);
  expect(inNetwork("192.168.1.77", "192.168.1.64/26")).toBe(true);
  expect(inNetwork("192.168.1.128", "192.168.1.64/26")).toBe(false);
  expect(inNetwork("::ffff:10.9.9.9", "10.0.0.0/8")).toBe(true);
  expect(inNetwork("::1", "::1")).toBe(true);
  expect(inNetwork("fd12:3456::1", "fd00::/8")).toBe(true);
  expect(inNetwork("fe80::1", "fd00::/8")).toBe(false);
  expect(inNetwork("10.0.0.1", "::/0")).toBe(false); // families never mix
  expect(inNetwork("garbage", "0.0.0.0/0")).toBe(false);
  expect(inNetwork("1.2.3.4", "1.2.3.4/33")).toBe(false);
  expect(inAnyNetwork("127.0.0.1", [])).toBe(false);
});

test("Received: carries protocol, TLS, auth, the single recipient, and cannot be injected", () => {
  expect(withProtocol({ esmtp: true, tls: true, authenticatedAs: "a@b", smtputf8: false })).toBe(
    "ESMTPSA",
  );
  expect(withProtocol({ esmtp: false, tls: false, authenticatedAs: null, smtputf8: false })).toBe(
    "SMTP",
  );
  const h = receivedHeader({
    heloName: "evil)\r\nX-Injected: yes",
    remoteAddress: "2001:db8::5",
    hostname: "mx.test",
    esmtp: true,
    tls: true,
    authenticatedAs: null,
    smtputf8: true,
    id: "c-1.1",
    recipient: null,
    date: new Date(Date.UTC(2025, 0, 2, 3, 4, 5)),
  });
  expect(h).toBe(
    "Received: from evil___X-Injected:_yes ([IPv6:2001:db8::5])\r\n" +
      "\tby mx.test (Posthorn) with UTF8SMTPS id c-1.1\r\n\t(using TLS); Thu, 2 Jan 2025 03:04:05 +0000\r\n",
  );
});
