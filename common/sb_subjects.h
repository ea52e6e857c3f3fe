/*
 * sb_subjects: the NATS subjects of the bus contract (README "The bus").
 * Partitioned subjects take ".<partition>"; delivery subjects take ".<user_id>".
 */
#ifndef SB_SUBJECTS_H
#define SB_SUBJECTS_H

#define SB_SUBJ_AUTH_VERIFY      "auth.verify"      /* req/reply, queue: gateway -> auth-svc */
#define SB_SUBJ_AUTH_LOOKUP      "auth.lookup"      /* req/reply, queue: chat-svc -> auth-svc */
#define SB_SUBJ_AUTH_ADMIN       "auth.admin"       /* req/reply, queue: sbctl -> auth-svc */
#define SB_SUBJ_AUTH_REVOKED     "auth.revoked"     /* publish: auth-svc -> gateways */
#define SB_SUBJ_CHAT_SEND        "chat.send"        /* .<p> req/reply, queue: gateway -> chat-svc */
#define SB_SUBJ_CHAT_SYNC        "chat.sync"        /* .<p> req/reply, queue: gateway -> chat-svc */
#define SB_SUBJ_CHAT_DELIVERED   "chat.delivered"   /* .<p> publish: gateway -> chat-svc */
#define SB_SUBJ_DELIVER_CHAT     "deliver.chat"     /* .<user> publish: chat-svc -> gateways */
#define SB_SUBJ_NOTIFY_SEND      "notify.send"      /* publish (JetStream): anyone -> notify-svc */
#define SB_SUBJ_NOTIFY_SEND_JSON "notify.send.json" /* same, JSON payload */
#define SB_SUBJ_NOTIFY_SYNC      "notify.sync"      /* req/reply, queue: gateway -> notify-svc */
#define SB_SUBJ_NOTIFY_DELIVERED "notify.delivered" /* publish: gateway -> notify-svc */
#define SB_SUBJ_DELIVER_NOTIFY   "deliver.notify"   /* .<user> / .all: notify-svc -> gateways */
#define SB_NOTIFY_STREAM         "NOTIFY"
#define SB_NOTIFY_CONSUMER       "notify-svc"
#define SB_NOTIFY_REPLY_HEADER   "Sb-Reply"

#define SB_QUEUE_AUTH   "auth-svc"
#define SB_QUEUE_CHAT   "chat-svc"
#define SB_QUEUE_NOTIFY "notify-svc"

#endif
