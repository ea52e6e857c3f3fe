/*
 * sb_subjects: the NATS subjects of the bus contract (README "The bus").
 * Partitioned subjects take ".<partition>"; delivery subjects take ".<user_id>".
 */
#ifndef SB_SUBJECTS_H
#define SB_SUBJECTS_H

#define SB_SUBJ_AUTH_VERIFY "auth.verify"   /* req/reply, queue: gateway -> auth-svc */
#define SB_SUBJ_AUTH_LOOKUP "auth.lookup"   /* req/reply, queue: chat-svc -> auth-svc */
#define SB_SUBJ_AUTH_ADMIN "auth.admin"     /* req/reply, queue: sbctl -> auth-svc */
#define SB_SUBJ_AUTH_REVOKED "auth.revoked" /* publish: auth-svc -> gateways */
#define SB_SUBJ_CHAT_SEND "chat.send"       /* .<p> req/reply, queue: gateway -> chat-svc */
#define SB_SUBJ_CHAT_SYNC "chat.sync"       /* .<p> req/reply, queue: gateway -> chat-svc */
#define SB_SUBJ_CHAT_DELIVERED "chat.delivered" /* .<p> publish: gateway -> chat-svc */
#define SB_SUBJ_DELIVER_CHAT "deliver.chat"     /* .<user> publish: chat-svc -> gateways */

#define SB_QUEUE_AUTH "auth-svc"
#define SB_QUEUE_CHAT "chat-svc"

#endif
