// The SMTP receive engine: `smtpEngine.listen(connector, ctx)` binds one receive connector
// (RFC 5321 server, with the submission rules of RFC 6409 on "submission" connectors). Sessions
// live in session.ts; the socket layer is protocols/wire/.
export { smtpEngine } from "./listener.ts";
export { SmtpSession } from "./session.ts";
export { parseSmtpCommand } from "./parser.ts";
export type { ParseResult, SmtpCommand, SmtpSyntaxError } from "./parser.ts";
