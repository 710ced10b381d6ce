// The wire layer: everything between a TCP socket and a protocol session. Engines import only
// this file: `listen` (sockets, TLS, limits), `LineReader` (framing), the SASL decoders, the
// plaintext-password rule and the self-signed certificate for a fresh install.
//
// How a session uses it (see listen.test.ts for a complete example):
// - `onData(chunk)`: `reader.push(chunk)`, then take `reader.next()` events while idle.
// - Awaiting the store: `conn.pause()`, await, `conn.resume()`, then carry on with
//   `reader.next()`: lines already buffered stay in the reader, nothing is lost or reordered.
// - Streaming a large reply: `conn.write(chunk)` then `await conn.drained()` per chunk. A
//   written Uint8Array is queued by reference: do not modify it afterwards.
// - STARTTLS: write the go-ahead reply, `reader.clear()` (bytes pipelined after the command
//   in the same packet are in the reader: drop them), `conn.pause()`, `await conn.startTls()`,
//   `conn.resume()`. The wire drops every plaintext byte that arrives after startTls() is
//   called. startTls() rejects if the listener is not "starttls" or TLS is already on.
// - Reading also stops by itself while the peer does not read our replies (write buffer over
//   limits.connectionBufferBytes), so a pipelining flood never grows memory.
// - A throw from onData is logged and closes that connection only.
export type { CloseReason, Connection, Session, SessionFactory } from "./types.ts";
export { listen } from "./listen.ts";
export type { ListenOptions, RejectReason, WireListenerConfig } from "./listen.ts";
export { latin1, LineReader } from "./line-reader.ts";
export type { LineEndMode, LineEvent, LineReaderOptions } from "./line-reader.ts";
export {
  decodeLoginField,
  decodePlain,
  decodePlainBase64,
  decodeSaslResponse,
  encodeBase64,
  LOGIN_PROMPTS,
  SaslError,
} from "./sasl.ts";
export type { PlainCredentials } from "./sasl.ts";
export { isLoopbackAddress, plaintextAllowed } from "./auth-policy.ts";
export {
  ensureSelfSignedCertificate,
  generateSelfSigned,
  SELF_SIGNED_CERT_FILE,
  SELF_SIGNED_KEY_FILE,
} from "./certificate.ts";
