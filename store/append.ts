// Filing an uploaded body into chosen folders (IMAP APPEND, NNTP POST/IHAVE): the same
// reserve → write → group-commit path as delivery, without recipient resolution.
import { StoreError } from "../ipc/store-api.ts";
import { addRef, findBody, insertBody } from "./bodies.ts";
import type { Committer } from "./commit.ts";
import type { Core } from "./core.ts";
import { folderById } from "./folders.ts";
import { headerEnd, messageIdOf, parseHeaders } from "./headers.ts";
import { queueForIndex } from "./fts.ts";
import { checkQuota, insertMessage } from "./messages.ts";
import type { Uploads } from "./uploads.ts";

export interface Filed {
  folderId: number;
  uid: number;
  messageId: number;
  uidValidity: number;
}

export async function fileUpload(
  core: Core,
  uploads: Uploads,
  committer: Committer,
  peer: string,
  uploadId: number,
  folderIds: number[],
  opts: { flags?: string[]; internalDate?: number; origin?: string | null } = {},
): Promise<Filed[]> {
  const up = uploads.take(uploadId, peer);
  const sha256 = up.hasher.digest("hex");
  const head = up.headBytes();
  const end = headerEnd(head);
  const messageIdHeader = messageIdOf(end >= 0 ? parseHeaders(head.subarray(0, end)) : []);
  const { used, spare } = up.split(core.pageBytes);
  const date = Number.isFinite(opts.internalDate) ? Number(opts.internalDate) : Date.now();
  return await committer.submit(
    () => {
      const out: Filed[] = [];
      if (folderIds.length === 0) {
        core.tx.afterCommit(() => core.space.giveBack(up.extents));
        return out;
      }
      for (const id of folderIds) {
        const f = folderById(core, id);
        if (!f) throw new StoreError("not_found", `no folder ${id}`);
        if (f.owner_id !== null) checkQuota(core, f.owner_id, up.size, 1);
      }
      const existing = findBody(core, sha256, up.size);
      let bodyId: number;
      if (existing) {
        bodyId = existing.id;
        addRef(core, bodyId, folderIds.length);
      } else {
        bodyId = insertBody(core, up.size, sha256, used, folderIds.length, up.inlineBytes());
        queueForIndex(core, bodyId);
      }
      for (const id of folderIds) {
        const ins = insertMessage(core, id, {
          bodyId,
          bodySize: up.size,
          prefix: null,
          flags: opts.flags ?? [],
          internalDate: date,
          messageIdHeader,
          origin: opts.origin ?? null,
        });
        out.push({
          folderId: id,
          uid: ins.uid,
          messageId: ins.messageId,
          uidValidity: folderById(core, id)!.uid_validity,
        });
      }
      core.tx.afterCommit(() => core.space.giveBack(existing ? up.extents : spare));
      return out;
    },
    () => core.space.giveBack(up.extents),
    up.wrotePages,
  );
}
