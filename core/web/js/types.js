// @ts-check
// Shapes shared by the client's modules, for JSDoc (`import('./types.js').Message`); nothing runs here.

/**
 * A stored message as the server sends it (docs/protocol.md "Messages").
 * @typedef {object} Message
 * @property {string} id
 * @property {string} conv
 * @property {number} seq
 * @property {string} from
 * @property {string} device
 * @property {string} cmid
 * @property {string} kind text | image | file | system | recall
 * @property {Record<string, any>} body
 * @property {number} ts
 * @property {boolean} recalled
 * @property {Quote} [quote]
 */

/**
 * The quoted message of a reply, as this reader may see it.
 * @typedef {{seq: number, id?: string, from?: string, kind?: string, text?: string, recalled?: boolean,
 *   unavailable?: boolean}} Quote
 */

/**
 * A message of this tab waiting for the server's `message.sent` (persisted per tab).
 * @typedef {object} OutboxEntry
 * @property {string} cmid
 * @property {string} conv
 * @property {string} kind
 * @property {Record<string, any>} body
 * @property {string} [text]
 * @property {string} [file]
 * @property {number} [reply_to]
 * @property {Quote} [quote]
 * @property {string} [state] pending | failed | unconfirmed
 * @property {number} [createdAt]
 * @property {number} [attempts]
 * @property {string} [error]
 * @property {string} [errorMessage]
 */

/**
 * The socket's state as the interface shows it.
 * @typedef {{state: string, retryAt: number, attempt: number, node: string, error: string}} Status
 */

/**
 * What the connection tells the store (store/session.js implements it).
 * @typedef {object} ConnectionHandlers
 * @property {(conv: string, msgs: Message[]) => void} onMessages released in seq order, each once
 * @property {(conv: string, meta: {lastSeq: number, firstSeq: number}) => void} onConvMeta
 * @property {() => void} onSynced
 * @property {(code: number, reason: string) => void} onDisconnected
 * @property {(f: any) => void} onReceipt
 * @property {(f: any) => void} onPresence
 * @property {(f: any) => void} onTyping
 * @property {(event: string, data: any) => void} onNotify
 * @property {(f: any) => void} onError
 * @property {(entry: OutboxEntry, f: any) => void} onSendFailed
 * @property {(reason: string) => void} onLoggedOut
 */

/**
 * A conversation as the list shows it.
 * @typedef {object} Conversation
 * @property {string} conv
 * @property {'direct' | 'group'} kind
 * @property {number} lastSeq
 * @property {number} readSeq
 * @property {number} firstSeq
 * @property {Message | null} last
 * @property {number} updated
 * @property {string | null} peer the other user of a direct conversation
 * @property {string | null} group the group id of a group conversation
 * @property {string} name
 * @property {boolean} dissolved
 * @property {boolean} left
 * @property {number[]} notices seqs of "you are friends now" notices (not counted as unread)
 */

/** @typedef {{delivered: number, read: number}} Mark */

/**
 * @typedef {object} Upload
 * @property {string} id
 * @property {string} conv
 * @property {string} name
 * @property {number} size
 * @property {'image' | 'file'} kind
 * @property {number} progress 0..1
 * @property {string} previewUrl
 * @property {() => void} abort
 */

export {};
