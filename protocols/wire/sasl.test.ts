import { describe, expect, test } from "bun:test";
import {
  decodeLoginField,
  decodePlainBase64,
  decodeSaslResponse,
  encodeBase64,
  SaslError,
} from "./sasl.ts";
import { isLoopbackAddress, plaintextAllowed } from "./auth-policy.ts";

const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");

describe("SASL PLAIN (RFC 4616)", () => {
  test("authzid NUL authcid NUL passwd", () => {
    expect(decodePlainBase64(b64("\0alice@example.com\0s3cret"))).toEqual({
      authzid: "",
      authcid: "alice@example.com",
      password: "s3cret",
    });
    expect(decodePlainBase64(b64("admin\0bob\0pässwörd")).authzid).toBe("admin");
    expect(decodePlainBase64(b64("\0bob\0pässwörd")).password).toBe("pässwörd");
  });

  test("malformed messages give clear errors", () => {
    const reason = (s: string) => {
      try {
        decodePlainBase64(s);
        return "ok";
      } catch (e) {
        expect(e).toBeInstanceOf(SaslError);
        return (e as SaslError).reason;
      }
    };
    expect(reason(b64("alice\0pw"))).toBe("malformed"); // one NUL
    expect(reason(b64("\0a\0b\0c"))).toBe("malformed"); // three NULs
    expect(reason(b64("\0\0pw"))).toBe("malformed"); // empty user
    expect(reason(b64("\0alice\0"))).toBe("malformed"); // empty password
    expect(reason("not base64!")).toBe("bad_base64");
    expect(reason("YWJj=")).toBe("bad_base64"); // bad padding
    expect(reason("YW")).toBe("bad_base64"); // padding required
    expect(reason("*")).toBe("cancelled");
    expect(reason(Buffer.from([0, 0x61, 0, 0xff, 0xfe]).toString("base64"))).toBe("malformed");
    expect(reason(b64(`\0${"u".repeat(300)}\0pw`))).toBe("too_long");
  });

  test("base64 helpers", () => {
    expect(decodeSaslResponse("=")).toEqual(new Uint8Array(0));
    expect(Buffer.from(decodeSaslResponse(" YWJj ")).toString()).toBe("abc");
    expect(encodeBase64("Username:")).toBe("VXNlcm5hbWU6");
  });

  test("LOGIN fields", () => {
    expect(decodeLoginField(b64("bob"), "user name")).toBe("bob");
    expect(() => decodeLoginField("=", "password")).toThrow(SaslError);
    expect(() => decodeLoginField("%%%", "password")).toThrow("invalid base64");
  });
});

describe("plaintextAllowed", () => {
  const cases = [
    { secure: false, loopback: false },
    { secure: false, loopback: true },
    { secure: true, loopback: false },
  ];
  test("always / tls-or-loopback / tls", () => {
    expect(cases.map((c) => plaintextAllowed(c, "always"))).toEqual([true, true, true]);
    expect(cases.map((c) => plaintextAllowed(c, "tls-or-loopback"))).toEqual([false, true, true]);
    expect(cases.map((c) => plaintextAllowed(c, "tls"))).toEqual([false, false, true]);
  });
  test("loopback addresses", () => {
    expect(["127.0.0.1", "127.9.8.7", "::1", "::ffff:127.0.0.1"].every(isLoopbackAddress)).toBe(
      true,
    );
    expect(["10.0.0.1", "128.0.0.1", "::2", "::ffff:10.0.0.1"].some(isLoopbackAddress)).toBe(false);
  });
});
