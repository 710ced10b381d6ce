import { describe, expect, test } from "bun:test";
import { parseCommand, parseLineCount, parseMessageNumber } from "./parser.ts";

const p = (s: string) => parseCommand(new TextEncoder().encode(s));

describe("POP3 parser", () => {
  test("keywords are case-insensitive; PASS keeps spaces in rest", () => {
    expect(p("retr 1")).toEqual({ ok: true, command: { verb: "RETR", args: ["1"], rest: "1" } });
    const pass = p("PASS my  secret ");
    expect(pass.ok && pass.command.rest).toBe("my  secret ");
    expect(p("CAPA")).toEqual({ ok: true, command: { verb: "CAPA", args: [], rest: "" } });
  });
  test("malformed lines are errors, not exceptions", () => {
    for (
      const bad of ["", "RE", "RETRIEVE 1", "R3TR", "LIST\x001", " STAT", "TOP " + "9".repeat(300)]
    ) {
      expect(p(bad).ok).toBe(false);
    }
  });
  test("numbers", () => {
    expect(parseMessageNumber("12")).toBe(12);
    for (const bad of ["0", "-1", "01", "1e3", "x", undefined, "9999999999"]) {
      expect(parseMessageNumber(bad)).toBeNull();
    }
    expect(parseLineCount("0")).toBe(0);
    expect(parseLineCount("-1")).toBeNull();
  });
});
