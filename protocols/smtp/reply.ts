// SMTP replies: the shape every command handler returns and its wire form. One place decides
// where an enhanced status code goes (RFC 2034 §3: on every 2xx/4xx/5xx line except the
// greeting and the HELO/EHLO replies), so handlers cannot forget it.

export interface Reply {
  /** RFC 5321 §4.2 three-digit reply code. */
  code: number;
  /** RFC 3463 enhanced status code ("5.5.2"), or null where RFC 2034 §3 omits it. */
  enhanced: string | null;
  /** One entry per reply line. */
  lines: string[];
}

export function reply(code: number, enhanced: string | null, text: string | string[]): Reply {
  return { code, enhanced, lines: typeof text === "string" ? [text] : text };
}

/** 4xx and 5xx replies: they count towards the session's error limit and are logged. */
export function isError(r: Reply): boolean {
  return r.code >= 400;
}

/**
 * The wire form: "250-first\r\n250 last\r\n" (RFC 5321 §4.2.1 multi-line replies), with the
 * enhanced code repeated on each line (RFC 2034 §4). Reply text never carries CR or LF: they
 * are replaced so a value echoed from the client cannot inject a reply line.
 */
export function formatReply(r: Reply): string {
  const lines = r.lines.length > 0 ? r.lines : [""];
  let out = "";
  for (let i = 0; i < lines.length; i++) {
    const sep = i === lines.length - 1 ? " " : "-";
    const text = lines[i]!.replace(/[\r\n]/g, " ");
    const body = r.enhanced ? (text ? `${r.enhanced} ${text}` : r.enhanced) : text;
    out += `${r.code}${sep}${body}\r\n`;
  }
  return out;
}
