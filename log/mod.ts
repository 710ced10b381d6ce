// The structured event log: every component logs events (time, level, component, event,
// fields). The supervisor writes them as JSON lines to the data dir and in readable form to
// stderr; workers forward theirs to the supervisor (see `forwardingLogger`).
import { appendFileSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";

export type LogLevel = "debug" | "info" | "warn" | "error";
const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface LogRecord {
  time: string;
  level: LogLevel;
  component: string;
  event: string;
  [field: string]: unknown;
}

export interface Logger {
  debug(event: string, fields?: Record<string, unknown>): void;
  info(event: string, fields?: Record<string, unknown>): void;
  warn(event: string, fields?: Record<string, unknown>): void;
  error(event: string, fields?: Record<string, unknown>): void;
  /** A logger for a sub-component: "smtp" → "smtp.session". */
  child(component: string): Logger;
}

export type LogSink = (record: LogRecord) => void;

export function makeLogger(component: string, sink: LogSink, minLevel: LogLevel = "debug"): Logger {
  const emit = (level: LogLevel, event: string, fields?: Record<string, unknown>) => {
    if (RANK[level] < RANK[minLevel]) return;
    sink({ time: new Date().toISOString(), level, component, event, ...normalize(fields) });
  };
  return {
    debug: (e, f) => emit("debug", e, f),
    info: (e, f) => emit("info", e, f),
    warn: (e, f) => emit("warn", e, f),
    error: (e, f) => emit("error", e, f),
    child: (c) => makeLogger(`${component}.${c}`, sink, minLevel),
  };
}

/** Errors become {message, code, stack-first-line} so they survive JSON and postMessage. */
function normalize(fields?: Record<string, unknown>): Record<string, unknown> {
  if (!fields) return {};
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) {
    if (v instanceof Error) {
      out[k] = { name: v.name, message: v.message, code: (v as { code?: unknown }).code };
    } else if (typeof v === "bigint") out[k] = v.toString();
    else out[k] = v;
  }
  return out;
}

/** A logger that discards everything (tests that do not care). */
export const silentLogger: Logger = makeLogger("silent", () => {}, "error");

/** A logger that keeps records in memory (tests that assert on log lines). */
export function memoryLogger(component = "test"): Logger & { records: LogRecord[] } {
  const records: LogRecord[] = [];
  return Object.assign(makeLogger(component, (r) => records.push(r)), { records });
}

export interface EventLogOptions {
  /** JSON-lines file; null for none. */
  file: string | null;
  /** Readable lines on stderr: "pretty", JSON lines: "json", or "off". */
  stderr: "pretty" | "json" | "off";
  level: LogLevel;
}

/**
 * The supervisor's sink: appends JSON lines to the event log file and echoes to stderr. Lines
 * are gathered and written once per event-loop turn (one open/append/close per batch rather
 * than per line: a busy server logs a line per message), errors at once (with what is
 * gathered before them); `flush()` writes what is gathered.
 */
export function eventLogSink(
  opts: EventLogOptions,
): LogSink & { recent: LogRecord[]; flush(): void } {
  if (opts.file) mkdirSync(dirname(opts.file), { recursive: true });
  const recent: LogRecord[] = [];
  let fileLines: string[] = [];
  let stderrLines: string[] = [];
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    if (fileLines.length > 0) {
      const text = fileLines.join("");
      fileLines = [];
      try {
        appendFileSync(opts.file!, text);
      } catch { /* a full disk must not take the server down with it */ }
    }
    if (stderrLines.length > 0) {
      const text = stderrLines.join("");
      stderrLines = [];
      process.stderr.write(text);
    }
  };
  const sink = (r: LogRecord) => {
    if (RANK[r.level] < RANK[opts.level]) return;
    recent.push(r);
    if (recent.length > 2000) recent.splice(0, recent.length - 1000);
    const line = JSON.stringify(r);
    if (opts.file) fileLines.push(line + "\n");
    if (opts.stderr === "json") stderrLines.push(line + "\n");
    else if (opts.stderr === "pretty") stderrLines.push(pretty(r) + "\n");
    // An error may be the last thing this process says before it dies: out at once.
    if (r.level === "error") flush();
    else if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  };
  return Object.assign(sink, { recent, flush });
}

export function pretty(r: LogRecord): string {
  const { time, level, component, event, ...rest } = r;
  const fields = Object.entries(rest).map(([k, v]) =>
    `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`
  )
    .join(" ");
  return `${time.slice(11, 23)} ${level.toUpperCase().padEnd(5)} ${component} ${event}${
    fields ? " " + fields : ""
  }`;
}

/** Inside a worker: records go to the parent as {type:"log", record} messages. */
export function forwardingLogger(
  component: string,
  post: (msg: unknown) => void,
  minLevel: LogLevel = "debug",
): Logger {
  return makeLogger(component, (record) => post({ type: "log", record }), minLevel);
}
