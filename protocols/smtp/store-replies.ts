// How store failures become SMTP replies: temporary ones ask the client to retry (4xx), so a
// message is never lost to a store hiccup; only a definite refusal is permanent.
import { StoreError, type StoreErrorCode } from "../../ipc/store-api.ts";
import { type Reply, reply } from "./reply.ts";

export function replyForStoreCode(code: StoreErrorCode, what: string): Reply {
  switch (code) {
    case "quota":
      return reply(552, "5.2.2", "Mailbox full"); // RFC 3463 X.2.2
    case "not_found":
      return reply(550, "5.1.1", "No such user here");
    case "denied":
      return reply(550, "5.7.1", "Delivery not authorized");
    case "invalid":
      return reply(554, "5.6.0", `Message refused by the store: ${what}`);
    default: // busy, unavailable, exists, in_use, internal: worth a retry later
      return reply(451, "4.3.0", "Temporary local problem, please try again later");
  }
}

export function replyForStoreError(err: unknown): Reply {
  if (err instanceof StoreError) return replyForStoreCode(err.code, err.message);
  return reply(451, "4.3.0", "Temporary local problem, please try again later");
}
