// Message-format helpers shared by the engines, the transport and the store: the date formats
// mail carries, and who a message's author is (./addresses.ts). Pure functions, no I/O.

const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const two = (n: number) => String(n).padStart(2, "0");
const time = (d: Date) =>
  `${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())}`;

/** RFC 5322 §3.3 date-time, in UTC: "Sun, 22 Nov 2026 03:04:05 +0000". */
export function rfc5322Date(at: Date | number): string {
  const d = typeof at === "number" ? new Date(at) : at;
  return `${DAYS[d.getUTCDay()]}, ${d.getUTCDate()} ${
    MONTHS[d.getUTCMonth()]
  } ${d.getUTCFullYear()} ${time(d)} +0000`;
}

/** C asctime() in UTC, as mbox "From " lines carry it: "Sun Nov 22 03:04:05 2026". */
export function asctime(at: Date | number): string {
  const d = typeof at === "number" ? new Date(at) : at;
  return `${DAYS[d.getUTCDay()]} ${MONTHS[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2)} ${
    time(d)
  } ${d.getUTCFullYear()}`;
}

export { addrSpecDomain, addrSpecText, authorMailboxes, mailboxes } from "./addresses.ts";
