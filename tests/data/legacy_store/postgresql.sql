--
-- PostgreSQL database dump
--

-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)
-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)

--
-- Name: legacy; Type: SCHEMA; Schema: -; Owner: -
--

--
-- Name: articles; Type: TABLE; Schema: legacy; Owner: -
--

CREATE TABLE articles (
    id character varying(64) NOT NULL,
    url character varying(2000) NOT NULL,
    canonical_url character varying(2000),
    guid character varying(2000),
    feed_id character varying(64),
    title text NOT NULL,
    site character varying(500),
    author character varying(500),
    published timestamp without time zone,
    summary text,
    content_html text,
    paragraphs text,
    fingerprint character varying(64),
    version integer NOT NULL,
    first_seen timestamp without time zone NOT NULL,
    updated_at timestamp without time zone NOT NULL
);

--
-- Name: bounce_events; Type: TABLE; Schema: legacy; Owner: -
--

CREATE TABLE bounce_events (
    id integer NOT NULL,
    email character varying(320) NOT NULL,
    severity character varying(8) NOT NULL,
    status character varying(16),
    diagnostic text,
    message_digest character varying(64) NOT NULL,
    at timestamp without time zone NOT NULL
);

--
-- Name: bounce_events_id_seq; Type: SEQUENCE; Schema: legacy; Owner: -
--

CREATE SEQUENCE bounce_events_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

--
-- Name: bounce_events_id_seq; Type: SEQUENCE OWNED BY; Schema: legacy; Owner: -
--

ALTER SEQUENCE bounce_events_id_seq OWNED BY bounce_events.id;

--
-- Name: discussion_entries; Type: TABLE; Schema: legacy; Owner: -
--

CREATE TABLE discussion_entries (
    id integer NOT NULL,
    message_digest character varying(64) NOT NULL,
    slug character varying(128) NOT NULL,
    audience character varying(64) NOT NULL,
    recipient character varying(320),
    sender_email character varying(320),
    sender_name character varying(500),
    received_at timestamp without time zone NOT NULL,
    text text NOT NULL,
    html text,
    status character varying(16) NOT NULL,
    created_at timestamp without time zone NOT NULL,
    decided_at timestamp without time zone
);

--
-- Name: discussion_entries_id_seq; Type: SEQUENCE; Schema: legacy; Owner: -
--

CREATE SEQUENCE discussion_entries_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

--
-- Name: discussion_entries_id_seq; Type: SEQUENCE OWNED BY; Schema: legacy; Owner: -
--

ALTER SEQUENCE discussion_entries_id_seq OWNED BY discussion_entries.id;

--
-- Name: draft_cache; Type: TABLE; Schema: legacy; Owner: -
--

CREATE TABLE draft_cache (
    kind character varying(16) NOT NULL,
    source_hash character varying(64) NOT NULL,
    model character varying(200) NOT NULL,
    prompt_version character varying(16) NOT NULL,
    language character varying(16) NOT NULL,
    value text NOT NULL,
    tokens integer NOT NULL,
    created_at timestamp without time zone NOT NULL
);

--
-- Name: feed_state; Type: TABLE; Schema: legacy; Owner: -
--

CREATE TABLE feed_state (
    feed_url character varying(2000) NOT NULL,
    feed_id character varying(64) NOT NULL,
    etag character varying(500),
    last_modified character varying(100),
    last_status character varying(32),
    last_error text,
    bozo text,
    entries_new integer,
    entries_seen integer,
    last_fetched_at timestamp without time zone,
    entries_updated integer,
    warnings text,
    last_ok_at timestamp without time zone
);

--
-- Name: mail_messages; Type: TABLE; Schema: legacy; Owner: -
--

CREATE TABLE mail_messages (
    id integer NOT NULL,
    mailbox character varying(500) NOT NULL,
    uidvalidity bigint NOT NULL,
    uid bigint NOT NULL,
    digest character varying(64) NOT NULL,
    message_id character varying(998),
    sender character varying(320),
    subject text,
    kind character varying(32) NOT NULL,
    detail text,
    folder character varying(500) NOT NULL,
    processed_at timestamp without time zone NOT NULL,
    moved_at timestamp without time zone
);

--
-- Name: mail_messages_id_seq; Type: SEQUENCE; Schema: legacy; Owner: -
--

CREATE SEQUENCE mail_messages_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

--
-- Name: mail_messages_id_seq; Type: SEQUENCE OWNED BY; Schema: legacy; Owner: -
--

ALTER SEQUENCE mail_messages_id_seq OWNED BY mail_messages.id;

--
-- Name: mailbox_state; Type: TABLE; Schema: legacy; Owner: -
--

CREATE TABLE mailbox_state (
    mailbox character varying(500) NOT NULL,
    uidvalidity bigint NOT NULL,
    updated_at timestamp without time zone NOT NULL
);

--
-- Name: published; Type: TABLE; Schema: legacy; Owner: -
--

CREATE TABLE published (
    slug character varying(128) NOT NULL,
    path character varying(500) NOT NULL,
    content_hash character varying(64) NOT NULL,
    first_published timestamp without time zone NOT NULL,
    updated timestamp without time zone NOT NULL,
    article_key character varying(64)
);

--
-- Name: ready_events; Type: TABLE; Schema: legacy; Owner: -
--

CREATE TABLE ready_events (
    slug character varying(128) NOT NULL,
    content_hash character varying(64) NOT NULL,
    event_id character varying(64) NOT NULL,
    emitted_at timestamp without time zone NOT NULL
);

--
-- Name: schema_version; Type: TABLE; Schema: legacy; Owner: -
--

CREATE TABLE schema_version (
    version integer NOT NULL
);

--
-- Name: schema_version_version_seq; Type: SEQUENCE; Schema: legacy; Owner: -
--

CREATE SEQUENCE schema_version_version_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

--
-- Name: schema_version_version_seq; Type: SEQUENCE OWNED BY; Schema: legacy; Owner: -
--

ALTER SEQUENCE schema_version_version_seq OWNED BY schema_version.version;

--
-- Name: send_ledger; Type: TABLE; Schema: legacy; Owner: -
--

CREATE TABLE send_ledger (
    id integer NOT NULL,
    slug character varying(128) NOT NULL,
    audience character varying(64) NOT NULL,
    recipient character varying(320) NOT NULL,
    content_hash character varying(64) NOT NULL,
    message_id character varying(500) NOT NULL,
    state character varying(16) NOT NULL,
    attempts integer NOT NULL,
    last_reply text,
    next_attempt_at timestamp without time zone,
    claimed_by character varying(128),
    claimed_at timestamp without time zone,
    created_at timestamp without time zone NOT NULL,
    updated_at timestamp without time zone NOT NULL
);

--
-- Name: send_ledger_id_seq; Type: SEQUENCE; Schema: legacy; Owner: -
--

CREATE SEQUENCE send_ledger_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

--
-- Name: send_ledger_id_seq; Type: SEQUENCE OWNED BY; Schema: legacy; Owner: -
--

ALTER SEQUENCE send_ledger_id_seq OWNED BY send_ledger.id;

--
-- Name: suppressions; Type: TABLE; Schema: legacy; Owner: -
--

CREATE TABLE suppressions (
    email character varying(320) NOT NULL,
    reason text NOT NULL,
    source character varying(32) NOT NULL,
    at timestamp without time zone NOT NULL,
    lifted_at timestamp without time zone
);

--
-- Name: unsubscribes; Type: TABLE; Schema: legacy; Owner: -
--

CREATE TABLE unsubscribes (
    audience character varying(64) NOT NULL,
    email character varying(320) NOT NULL,
    at timestamp without time zone NOT NULL,
    method character varying(32) NOT NULL
);

--
-- Name: bounce_events id; Type: DEFAULT; Schema: legacy; Owner: -
--

ALTER TABLE ONLY bounce_events ALTER COLUMN id SET DEFAULT nextval('bounce_events_id_seq'::regclass);

--
-- Name: discussion_entries id; Type: DEFAULT; Schema: legacy; Owner: -
--

ALTER TABLE ONLY discussion_entries ALTER COLUMN id SET DEFAULT nextval('discussion_entries_id_seq'::regclass);

--
-- Name: mail_messages id; Type: DEFAULT; Schema: legacy; Owner: -
--

ALTER TABLE ONLY mail_messages ALTER COLUMN id SET DEFAULT nextval('mail_messages_id_seq'::regclass);

--
-- Name: schema_version version; Type: DEFAULT; Schema: legacy; Owner: -
--

ALTER TABLE ONLY schema_version ALTER COLUMN version SET DEFAULT nextval('schema_version_version_seq'::regclass);

--
-- Name: send_ledger id; Type: DEFAULT; Schema: legacy; Owner: -
--

ALTER TABLE ONLY send_ledger ALTER COLUMN id SET DEFAULT nextval('send_ledger_id_seq'::regclass);

--
-- Data for Name: articles; Type: TABLE DATA; Schema: legacy; Owner: -
--

INSERT INTO articles VALUES ('a1b2c3d4e5f60718', 'https://news.example.org/2026/06/ai-builds-ai', 'https://news.example.org/2026/06/ai-builds-ai', 'urn:x:1', 'frontier-notes', 'Anthropic: AI builds AI — 人工智能', 'news.example.org', 'J. Doe', '2026-06-01 09:00:00', 'Teaser', '<p>First paragraph.</p><p>第二段。</p>', '[{"id": "p01-e63cf090", "kind": "p", "text": "First paragraph.", "image_src": "", "image_alt": "", "footnote_number": null}, {"id": "p02-7c68bb26", "kind": "p", "text": "第二段。", "image_src": "", "image_alt": "", "footnote_number": null}]', 'f1e2d3c4b5a69788', 1, '2026-12-05 09:07:45.492121', '2026-12-05 09:07:45.492121');

--
-- Data for Name: bounce_events; Type: TABLE DATA; Schema: legacy; Owner: -
--

INSERT INTO bounce_events VALUES (1, 'bounce@example.net', 'hard', '5.1.1', '550 no such user', 'cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc', '2026-06-03 08:30:15');

--
-- Data for Name: discussion_entries; Type: TABLE DATA; Schema: legacy; Owner: -
--

INSERT INTO discussion_entries VALUES (1, 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', 'anthropic-ai-builds-ai', 'atou', 'sent@example.org', 'reader@example.net', '张伟', '2026-06-03 08:30:15', '很有意思的观点。', '<p>很有意思的观点。</p>', 'pending', '2026-06-03 08:30:15', NULL);

--
-- Data for Name: draft_cache; Type: TABLE DATA; Schema: legacy; Owner: -
--

INSERT INTO draft_cache VALUES ('translation', 'ssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssss', 'qwen2.5:7b-instruct', '3', 'zh-CN', '"第一段的译文"', 42, '2026-06-03 08:30:15');

--
-- Data for Name: feed_state; Type: TABLE DATA; Schema: legacy; Owner: -
--

INSERT INTO feed_state VALUES ('https://news.example.org/feed.xml', 'frontier-notes', '"v1"', 'Mon, 01 Jun 2026 09:00:00 GMT', 'ok', NULL, NULL, 1, 3, '2026-12-05 09:07:45.494802', 0, '[]', '2026-06-03 08:30:15');
INSERT INTO feed_state VALUES ('https://broken.example.org/feed.xml', 'broken', NULL, NULL, 'error', 'HTTP 503', NULL, 0, 0, '2026-12-05 09:07:45.496637', 0, NULL, NULL);

--
-- Data for Name: mail_messages; Type: TABLE DATA; Schema: legacy; Owner: -
--

INSERT INTO mail_messages VALUES (1, 'imaps://news@imap.example.org/INBOX', 3000000001, 4000000002, 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', '<reply@mail.example.net>', 'reader@example.net', 'Re: AI builds AI', 'reply', 'anthropic-ai-builds-ai/atou: pending discussion entry', 'Briefing/Replies', '2026-06-03 08:30:15', '2026-06-03 08:30:15');

--
-- Data for Name: mailbox_state; Type: TABLE DATA; Schema: legacy; Owner: -
--

INSERT INTO mailbox_state VALUES ('imaps://news@imap.example.org/INBOX', 3000000001, '2026-06-03 08:30:15');

--
-- Data for Name: published; Type: TABLE DATA; Schema: legacy; Owner: -
--

INSERT INTO published VALUES ('anthropic-ai-builds-ai', '2026/06/anthropic-ai-builds-ai.md', 'd1', '2026-06-03 08:30:15', '2026-06-03 08:30:15', 'a1b2c3d4e5f60718');

--
-- Data for Name: ready_events; Type: TABLE DATA; Schema: legacy; Owner: -
--

INSERT INTO ready_events VALUES ('anthropic-ai-builds-ai', 'hash1', '6f1d3c52-0000-4000-8000-000000000001', '2026-12-05 09:07:45.520122');

--
-- Data for Name: schema_version; Type: TABLE DATA; Schema: legacy; Owner: -
--

INSERT INTO schema_version VALUES (1);
INSERT INTO schema_version VALUES (2);

--
-- Data for Name: send_ledger; Type: TABLE DATA; Schema: legacy; Owner: -
--

INSERT INTO send_ledger VALUES (3, 'anthropic-ai-builds-ai', 'atou', 'gone@example.org', 'hash1', '<m3@briefing.example.org>', 'skipped', 0, 'unsubscribed', NULL, NULL, NULL, '2026-12-05 09:07:45.499717', '2026-12-05 09:07:45.499717');
INSERT INTO send_ledger VALUES (1, 'anthropic-ai-builds-ai', 'atou', 'sent@example.org', 'hash1', '<m1@briefing.example.org>', 'sent', 1, '250 2.0.0 Ok: queued', NULL, NULL, NULL, '2026-12-05 09:07:45.499717', '2026-12-05 09:07:45.5162');
INSERT INTO send_ledger VALUES (2, 'anthropic-ai-builds-ai', 'atou', 'failed@example.org', 'hash1', '<m2@briefing.example.org>', 'failed', 1, '550 5.1.1 no such user', NULL, NULL, NULL, '2026-12-05 09:07:45.499717', '2026-12-05 09:07:45.517658');
INSERT INTO send_ledger VALUES (4, 'anthropic-ai-builds-ai', 'atou', 'later@example.org', 'hash1', '<m4@briefing.example.org>', 'deferred', 1, '451 4.7.1 try again', '2026-06-03 08:30:15', NULL, NULL, '2026-12-05 09:07:45.499717', '2026-12-05 09:07:45.518611');

--
-- Data for Name: suppressions; Type: TABLE DATA; Schema: legacy; Owner: -
--

INSERT INTO suppressions VALUES ('bounce@example.net', 'hard bounce 5.1.1', 'hard-bounce', '2026-06-03 08:30:15', NULL);

--
-- Data for Name: unsubscribes; Type: TABLE DATA; Schema: legacy; Owner: -
--

INSERT INTO unsubscribes VALUES ('atou', 'gone@example.org', '2026-12-05 09:07:45.519171', 'link');

--
-- Name: bounce_events_id_seq; Type: SEQUENCE SET; Schema: legacy; Owner: -
--

SELECT pg_catalog.setval('bounce_events_id_seq', 1, true);

--
-- Name: discussion_entries_id_seq; Type: SEQUENCE SET; Schema: legacy; Owner: -
--

SELECT pg_catalog.setval('discussion_entries_id_seq', 1, true);

--
-- Name: mail_messages_id_seq; Type: SEQUENCE SET; Schema: legacy; Owner: -
--

SELECT pg_catalog.setval('mail_messages_id_seq', 1, true);

--
-- Name: schema_version_version_seq; Type: SEQUENCE SET; Schema: legacy; Owner: -
--

SELECT pg_catalog.setval('schema_version_version_seq', 1, false);

--
-- Name: send_ledger_id_seq; Type: SEQUENCE SET; Schema: legacy; Owner: -
--

SELECT pg_catalog.setval('send_ledger_id_seq', 4, true);

--
-- Name: articles articles_pkey; Type: CONSTRAINT; Schema: legacy; Owner: -
--

ALTER TABLE ONLY articles
    ADD CONSTRAINT articles_pkey PRIMARY KEY (id);

--
-- Name: bounce_events bounce_events_pkey; Type: CONSTRAINT; Schema: legacy; Owner: -
--

ALTER TABLE ONLY bounce_events
    ADD CONSTRAINT bounce_events_pkey PRIMARY KEY (id);

--
-- Name: discussion_entries discussion_entries_message_digest_key; Type: CONSTRAINT; Schema: legacy; Owner: -
--

ALTER TABLE ONLY discussion_entries
    ADD CONSTRAINT discussion_entries_message_digest_key UNIQUE (message_digest);

--
-- Name: discussion_entries discussion_entries_pkey; Type: CONSTRAINT; Schema: legacy; Owner: -
--

ALTER TABLE ONLY discussion_entries
    ADD CONSTRAINT discussion_entries_pkey PRIMARY KEY (id);

--
-- Name: draft_cache draft_cache_pkey; Type: CONSTRAINT; Schema: legacy; Owner: -
--

ALTER TABLE ONLY draft_cache
    ADD CONSTRAINT draft_cache_pkey PRIMARY KEY (kind, source_hash, model, prompt_version, language);

--
-- Name: feed_state feed_state_pkey; Type: CONSTRAINT; Schema: legacy; Owner: -
--

ALTER TABLE ONLY feed_state
    ADD CONSTRAINT feed_state_pkey PRIMARY KEY (feed_url);

--
-- Name: mail_messages mail_messages_digest_key; Type: CONSTRAINT; Schema: legacy; Owner: -
--

ALTER TABLE ONLY mail_messages
    ADD CONSTRAINT mail_messages_digest_key UNIQUE (digest);

--
-- Name: mail_messages mail_messages_pkey; Type: CONSTRAINT; Schema: legacy; Owner: -
--

ALTER TABLE ONLY mail_messages
    ADD CONSTRAINT mail_messages_pkey PRIMARY KEY (id);

--
-- Name: mailbox_state mailbox_state_pkey; Type: CONSTRAINT; Schema: legacy; Owner: -
--

ALTER TABLE ONLY mailbox_state
    ADD CONSTRAINT mailbox_state_pkey PRIMARY KEY (mailbox);

--
-- Name: published published_path_key; Type: CONSTRAINT; Schema: legacy; Owner: -
--

ALTER TABLE ONLY published
    ADD CONSTRAINT published_path_key UNIQUE (path);

--
-- Name: published published_pkey; Type: CONSTRAINT; Schema: legacy; Owner: -
--

ALTER TABLE ONLY published
    ADD CONSTRAINT published_pkey PRIMARY KEY (slug);

--
-- Name: ready_events ready_events_pkey; Type: CONSTRAINT; Schema: legacy; Owner: -
--

ALTER TABLE ONLY ready_events
    ADD CONSTRAINT ready_events_pkey PRIMARY KEY (slug, content_hash);

--
-- Name: schema_version schema_version_pkey; Type: CONSTRAINT; Schema: legacy; Owner: -
--

ALTER TABLE ONLY schema_version
    ADD CONSTRAINT schema_version_pkey PRIMARY KEY (version);

--
-- Name: send_ledger send_ledger_pkey; Type: CONSTRAINT; Schema: legacy; Owner: -
--

ALTER TABLE ONLY send_ledger
    ADD CONSTRAINT send_ledger_pkey PRIMARY KEY (id);

--
-- Name: suppressions suppressions_pkey; Type: CONSTRAINT; Schema: legacy; Owner: -
--

ALTER TABLE ONLY suppressions
    ADD CONSTRAINT suppressions_pkey PRIMARY KEY (email);

--
-- Name: unsubscribes unsubscribes_pkey; Type: CONSTRAINT; Schema: legacy; Owner: -
--

ALTER TABLE ONLY unsubscribes
    ADD CONSTRAINT unsubscribes_pkey PRIMARY KEY (audience, email);

--
-- Name: send_ledger uq_ledger_row; Type: CONSTRAINT; Schema: legacy; Owner: -
--

ALTER TABLE ONLY send_ledger
    ADD CONSTRAINT uq_ledger_row UNIQUE (slug, audience, recipient, content_hash);

--
-- Name: ix_articles_canonical_url; Type: INDEX; Schema: legacy; Owner: -
--

CREATE INDEX ix_articles_canonical_url ON articles USING btree (canonical_url);

--
-- Name: ix_articles_fingerprint; Type: INDEX; Schema: legacy; Owner: -
--

CREATE INDEX ix_articles_fingerprint ON articles USING btree (fingerprint);

--
-- Name: ix_articles_guid; Type: INDEX; Schema: legacy; Owner: -
--

CREATE INDEX ix_articles_guid ON articles USING btree (guid);

--
-- Name: ix_bounce_events_email; Type: INDEX; Schema: legacy; Owner: -
--

CREATE INDEX ix_bounce_events_email ON bounce_events USING btree (email);

--
-- Name: ix_discussion_entries_slug; Type: INDEX; Schema: legacy; Owner: -
--

CREATE INDEX ix_discussion_entries_slug ON discussion_entries USING btree (slug);

--
-- Name: ix_discussion_entries_status; Type: INDEX; Schema: legacy; Owner: -
--

CREATE INDEX ix_discussion_entries_status ON discussion_entries USING btree (status);

--
-- Name: ix_mail_messages_uid; Type: INDEX; Schema: legacy; Owner: -
--

CREATE INDEX ix_mail_messages_uid ON mail_messages USING btree (mailbox, uidvalidity, uid);

--
-- Name: ix_published_article_key; Type: INDEX; Schema: legacy; Owner: -
--

CREATE INDEX ix_published_article_key ON published USING btree (article_key);

--
-- Name: ix_send_ledger_claim; Type: INDEX; Schema: legacy; Owner: -
--

CREATE INDEX ix_send_ledger_claim ON send_ledger USING btree (slug, audience, state, id);

--
-- Name: ix_send_ledger_message_id; Type: INDEX; Schema: legacy; Owner: -
--

CREATE INDEX ix_send_ledger_message_id ON send_ledger USING btree (message_id);

--
-- Name: ix_send_ledger_state; Type: INDEX; Schema: legacy; Owner: -
--

CREATE INDEX ix_send_ledger_state ON send_ledger USING btree (state);

--
-- PostgreSQL database dump complete
--
