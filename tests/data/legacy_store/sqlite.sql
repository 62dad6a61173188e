BEGIN TRANSACTION;
CREATE TABLE articles (
	id VARCHAR(64) NOT NULL, 
	url VARCHAR(2000) NOT NULL, 
	canonical_url VARCHAR(2000), 
	guid VARCHAR(2000), 
	feed_id VARCHAR(64), 
	title TEXT NOT NULL, 
	site VARCHAR(500), 
	author VARCHAR(500), 
	published DATETIME, 
	summary TEXT, 
	content_html TEXT, 
	paragraphs TEXT, 
	fingerprint VARCHAR(64), 
	version INTEGER NOT NULL, 
	first_seen DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO "articles" VALUES('a1b2c3d4e5f60718','https://news.example.org/2026/06/ai-builds-ai','https://news.example.org/2026/06/ai-builds-ai','urn:x:1','frontier-notes','Anthropic: AI builds AI — 人工智能','news.example.org','J. Doe','2026-06-01 09:00:00.000000','Teaser','<p>First paragraph.</p><p>第二段。</p>','[{"id": "p01-e63cf090", "kind": "p", "text": "First paragraph.", "image_src": "", "image_alt": "", "footnote_number": null}, {"id": "p02-7c68bb26", "kind": "p", "text": "第二段。", "image_src": "", "image_alt": "", "footnote_number": null}]','f1e2d3c4b5a69788',1,'2026-12-05 09:07:43.710043','2026-12-05 09:07:43.710043');
CREATE TABLE bounce_events (
	id INTEGER NOT NULL, 
	email VARCHAR(320) NOT NULL, 
	severity VARCHAR(8) NOT NULL, 
	status VARCHAR(16), 
	diagnostic TEXT, 
	message_digest VARCHAR(64) NOT NULL, 
	at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO "bounce_events" VALUES(1,'bounce@example.net','hard','5.1.1','550 no such user','cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc','2026-06-03 08:30:15.000000');
CREATE TABLE discussion_entries (
	id INTEGER NOT NULL, 
	message_digest VARCHAR(64) NOT NULL, 
	slug VARCHAR(128) NOT NULL, 
	audience VARCHAR(64) NOT NULL, 
	recipient VARCHAR(320), 
	sender_email VARCHAR(320), 
	sender_name VARCHAR(500), 
	received_at DATETIME NOT NULL, 
	text TEXT NOT NULL, 
	html TEXT, 
	status VARCHAR(16) NOT NULL, 
	created_at DATETIME NOT NULL, 
	decided_at DATETIME, 
	PRIMARY KEY (id), 
	UNIQUE (message_digest)
);
INSERT INTO "discussion_entries" VALUES(1,'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb','anthropic-ai-builds-ai','atou','sent@example.org','reader@example.net','张伟','2026-06-03 08:30:15.000000','很有意思的观点。','<p>很有意思的观点。</p>','pending','2026-06-03 08:30:15.000000',NULL);
CREATE TABLE draft_cache (
	kind VARCHAR(16) NOT NULL, 
	source_hash VARCHAR(64) NOT NULL, 
	model VARCHAR(200) NOT NULL, 
	prompt_version VARCHAR(16) NOT NULL, 
	language VARCHAR(16) NOT NULL, 
	value TEXT NOT NULL, 
	tokens INTEGER NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (kind, source_hash, model, prompt_version, language)
);
INSERT INTO "draft_cache" VALUES('translation','ssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssss','qwen2.5:7b-instruct','3','zh-CN','"第一段的译文"',42,'2026-06-03 08:30:15.000000');
CREATE TABLE feed_state (
	feed_url VARCHAR(2000) NOT NULL, 
	feed_id VARCHAR(64) NOT NULL, 
	etag VARCHAR(500), 
	last_modified VARCHAR(100), 
	last_status VARCHAR(32), 
	last_error TEXT, 
	bozo TEXT, 
	entries_new INTEGER, 
	entries_seen INTEGER, 
	last_fetched_at DATETIME, 
	entries_updated INTEGER, 
	warnings TEXT, 
	last_ok_at DATETIME, 
	PRIMARY KEY (feed_url)
);
INSERT INTO "feed_state" VALUES('https://news.example.org/feed.xml','frontier-notes','"v1"','Mon, 01 Jun 2026 09:00:00 GMT','ok',NULL,NULL,1,3,'2026-12-05 09:07:43.711871',0,'[]','2026-06-03 08:30:15.000000');
INSERT INTO "feed_state" VALUES('https://broken.example.org/feed.xml','broken',NULL,NULL,'error','HTTP 503',NULL,0,0,'2026-12-05 09:07:43.713114',0,NULL,NULL);
CREATE TABLE mail_messages (
	id INTEGER NOT NULL, 
	mailbox VARCHAR(500) NOT NULL, 
	uidvalidity BIGINT NOT NULL, 
	uid BIGINT NOT NULL, 
	digest VARCHAR(64) NOT NULL, 
	message_id VARCHAR(998), 
	sender VARCHAR(320), 
	subject TEXT, 
	kind VARCHAR(32) NOT NULL, 
	detail TEXT, 
	folder VARCHAR(500) NOT NULL, 
	processed_at DATETIME NOT NULL, 
	moved_at DATETIME, 
	PRIMARY KEY (id), 
	UNIQUE (digest)
);
INSERT INTO "mail_messages" VALUES(1,'imaps://news@imap.example.org/INBOX',3000000001,4000000002,'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb','<reply@mail.example.net>','reader@example.net','Re: AI builds AI','reply','anthropic-ai-builds-ai/atou: pending discussion entry','Briefing/Replies','2026-06-03 08:30:15.000000','2026-06-03 08:30:15.000000');
CREATE TABLE mailbox_state (
	mailbox VARCHAR(500) NOT NULL, 
	uidvalidity BIGINT NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (mailbox)
);
INSERT INTO "mailbox_state" VALUES('imaps://news@imap.example.org/INBOX',3000000001,'2026-06-03 08:30:15.000000');
CREATE TABLE published (
	slug VARCHAR(128) NOT NULL, 
	path VARCHAR(500) NOT NULL, 
	content_hash VARCHAR(64) NOT NULL, 
	first_published DATETIME NOT NULL, 
	updated DATETIME NOT NULL, 
	article_key VARCHAR(64), 
	PRIMARY KEY (slug), 
	UNIQUE (path)
);
INSERT INTO "published" VALUES('anthropic-ai-builds-ai','2026/06/anthropic-ai-builds-ai.md','d1','2026-06-03 08:30:15.000000','2026-06-03 08:30:15.000000','a1b2c3d4e5f60718');
CREATE TABLE ready_events (
	slug VARCHAR(128) NOT NULL, 
	content_hash VARCHAR(64) NOT NULL, 
	event_id VARCHAR(64) NOT NULL, 
	emitted_at DATETIME NOT NULL, 
	PRIMARY KEY (slug, content_hash)
);
INSERT INTO "ready_events" VALUES('anthropic-ai-builds-ai','hash1','6f1d3c52-0000-4000-8000-000000000001','2026-12-05 09:07:43.725604');
CREATE TABLE schema_version (
	version INTEGER NOT NULL, 
	PRIMARY KEY (version)
);
INSERT INTO "schema_version" VALUES(1);
INSERT INTO "schema_version" VALUES(2);
CREATE TABLE send_ledger (
	id INTEGER NOT NULL, 
	slug VARCHAR(128) NOT NULL, 
	audience VARCHAR(64) NOT NULL, 
	recipient VARCHAR(320) NOT NULL, 
	content_hash VARCHAR(64) NOT NULL, 
	message_id VARCHAR(500) NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	attempts INTEGER NOT NULL, 
	last_reply TEXT, 
	next_attempt_at DATETIME, 
	claimed_by VARCHAR(128), 
	claimed_at DATETIME, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_ledger_row UNIQUE (slug, audience, recipient, content_hash)
);
INSERT INTO "send_ledger" VALUES(1,'anthropic-ai-builds-ai','atou','sent@example.org','hash1','<m1@briefing.example.org>','sent',1,'250 2.0.0 Ok: queued',NULL,NULL,NULL,'2026-12-05 09:07:43.713871','2026-12-05 09:07:43.721650');
INSERT INTO "send_ledger" VALUES(2,'anthropic-ai-builds-ai','atou','failed@example.org','hash1','<m2@briefing.example.org>','failed',1,'550 5.1.1 no such user',NULL,NULL,NULL,'2026-12-05 09:07:43.713871','2026-12-05 09:07:43.722631');
INSERT INTO "send_ledger" VALUES(3,'anthropic-ai-builds-ai','atou','gone@example.org','hash1','<m3@briefing.example.org>','skipped',0,'unsubscribed',NULL,NULL,NULL,'2026-12-05 09:07:43.713871','2026-12-05 09:07:43.713871');
INSERT INTO "send_ledger" VALUES(4,'anthropic-ai-builds-ai','atou','later@example.org','hash1','<m4@briefing.example.org>','deferred',1,'451 4.7.1 try again','2026-06-03 08:30:15.000000',NULL,NULL,'2026-12-05 09:07:43.713871','2026-12-05 09:07:43.722990');
CREATE TABLE suppressions (
	email VARCHAR(320) NOT NULL, 
	reason TEXT NOT NULL, 
	source VARCHAR(32) NOT NULL, 
	at DATETIME NOT NULL, 
	lifted_at DATETIME, 
	PRIMARY KEY (email)
);
INSERT INTO "suppressions" VALUES('bounce@example.net','hard bounce 5.1.1','hard-bounce','2026-06-03 08:30:15.000000',NULL);
CREATE TABLE unsubscribes (
	audience VARCHAR(64) NOT NULL, 
	email VARCHAR(320) NOT NULL, 
	at DATETIME NOT NULL, 
	method VARCHAR(32) NOT NULL, 
	PRIMARY KEY (audience, email)
);
INSERT INTO "unsubscribes" VALUES('atou','gone@example.org','2026-12-05 09:07:43.723599','link');
CREATE INDEX ix_articles_fingerprint ON articles (fingerprint);
CREATE INDEX ix_articles_guid ON articles (guid);
CREATE INDEX ix_articles_canonical_url ON articles (canonical_url);
CREATE INDEX ix_send_ledger_claim ON send_ledger (slug, audience, state, id);
CREATE INDEX ix_send_ledger_message_id ON send_ledger (message_id);
CREATE INDEX ix_send_ledger_state ON send_ledger (state);
CREATE INDEX ix_published_article_key ON published (article_key);
CREATE INDEX ix_mail_messages_uid ON mail_messages (mailbox, uidvalidity, uid);
CREATE INDEX ix_bounce_events_email ON bounce_events (email);
CREATE INDEX ix_discussion_entries_status ON discussion_entries (status);
CREATE INDEX ix_discussion_entries_slug ON discussion_entries (slug);
COMMIT;
