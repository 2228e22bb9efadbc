-- builtin.sql -- the streams and tables gamingd starts with, as a ksqlDB
-- user of the Real-Time Gaming Intelligence Platform writes them.
--
-- Built into the binary and compiled at start by the same planner as a
-- user's CREATE ... AS SELECT: the tables below are the definitions the
-- engine runs. DESCRIBE shows these statements.
--
-- The sources are declared by their columns: gamingd reads the three topics
-- itself (SPEC §3) and checks that every column declared here is a field its
-- decoders know. The enrichment (the left joins and derived fields of SPEC
-- §4) is built into gamingd; the enriched stream is declared by its columns,
-- in the order of the output's Avro schema.
--
-- PII marks a column that holds personal data; it is the one place that
-- says so. Everything computed from such a column is personal too (the
-- planner carries the mark through every expression, into the tables and
-- streams defined over it), and is masked for API keys without the pii
-- scope. The Avro schemas tag the same fields "confluent:tags": ["PII"].

CREATE STREAM gaming_player_activity_stream (
    activity_id STRING KEY, player_id STRING, game_id STRING, session_id STRING, activity_type STRING,
    activity_timestamp BIGINT, score BIGINT, duration_seconds INTEGER, achievements_unlocked INTEGER,
    in_game_purchases DOUBLE
) WITH (KAFKA_TOPIC = 'gaming_player_activity', VALUE_FORMAT = 'JSON', TIMESTAMP = 'activity_timestamp');

CREATE STREAM gaming_games_stream (
    game_id STRING KEY, game_name STRING, genre STRING, publisher STRING, release_date STRING, platform STRING,
    rating DOUBLE, price DOUBLE
) WITH (KAFKA_TOPIC = 'gaming_games', VALUE_FORMAT = 'JSON');

CREATE STREAM gaming_players_stream (
    player_id STRING KEY, username STRING, email STRING PII, created_date STRING, country STRING, level INTEGER,
    total_playtime_hours DOUBLE, account_status STRING
) WITH (KAFKA_TOPIC = 'gaming_players', VALUE_FORMAT = 'JSON');

CREATE TABLE gaming_games_table (
    game_id STRING PRIMARY KEY, game_name STRING, genre STRING, publisher STRING, release_date STRING,
    platform STRING, rating DOUBLE, price DOUBLE
) WITH (KAFKA_TOPIC = 'gaming_games', VALUE_FORMAT = 'JSON');

CREATE TABLE gaming_players_table (
    player_id STRING PRIMARY KEY, username STRING, email STRING PII, created_date STRING, country STRING,
    level INTEGER, total_playtime_hours DOUBLE, account_status STRING
) WITH (KAFKA_TOPIC = 'gaming_players', VALUE_FORMAT = 'JSON');

CREATE STREAM gaming_real_time_intelligence_platform (
    game_id STRING, game_name STRING, game_genre STRING, player_id STRING KEY, player_username STRING,
    player_email STRING PII, player_level INTEGER, activity_type STRING, session_id STRING, score BIGINT,
    duration_seconds INTEGER, total_sessions_1h BIGINT, avg_score_1h DOUBLE, active_players_count BIGINT,
    event_timestamp BIGINT, processing_timestamp BIGINT, activity_id STRING, achievements_unlocked INTEGER,
    in_game_purchases DOUBLE, player_country STRING, player_status STRING, game_publisher STRING,
    game_platform STRING, game_rating DOUBLE, player_segment STRING, session_type STRING, has_purchase BOOLEAN
) WITH (KAFKA_TOPIC = 'gaming.real-time-gaming-intelligence-platform', VALUE_FORMAT = 'AVRO',
        TIMESTAMP = 'event_timestamp');

-- The name the data product's troubleshooting queries use for the same records.
CREATE STREAM gaming_activity_enriched AS
    SELECT * FROM gaming_real_time_intelligence_platform;

-- The materialized tables of SPEC §6. The enriched record's
-- total_sessions_1h, avg_score_1h and active_players_count are read from
-- the columns of those names below.

CREATE TABLE gaming_hourly_player_game_stats AS
    SELECT player_id, game_id,
           COUNT(*) AS total_sessions_1h,
           SUM(duration_seconds) AS total_duration_1h,
           AVG(score) AS avg_score_1h,
           MAX(score) AS max_score_1h,
           SUM(achievements_unlocked) AS total_achievements_1h,
           SUM(in_game_purchases) AS total_purchases_1h,
           COUNT_DISTINCT(session_id) AS unique_sessions_1h
    FROM gaming_real_time_intelligence_platform
    WINDOW TUMBLING (SIZE 1 HOUR)
    GROUP BY player_id, game_id
    EMIT CHANGES;

CREATE TABLE gaming_active_players_5min AS
    SELECT game_id,
           LATEST_BY_OFFSET(game_name) AS game_name,
           COUNT_DISTINCT(player_id) AS active_players_count,
           COUNT(*) AS total_activities,
           AVG(duration_seconds) AS avg_session_duration
    FROM gaming_real_time_intelligence_platform
    WINDOW TUMBLING (SIZE 5 MINUTES)
    GROUP BY game_id
    EMIT CHANGES;

CREATE TABLE gaming_top_performers_hourly AS
    SELECT game_id, player_id,
           LATEST_BY_OFFSET(player_username) AS player_username,
           SUM(score) AS total_score,
           COUNT(*) AS activity_count,
           MAX(score) AS best_score
    FROM gaming_real_time_intelligence_platform
    WINDOW TUMBLING (SIZE 1 HOUR)
    GROUP BY game_id, player_id
    HAVING SUM(score) > 1000
    EMIT CHANGES;

CREATE TABLE gaming_revenue_analytics AS
    SELECT game_id,
           LATEST_BY_OFFSET(game_name) AS game_name,
           COUNT_DISTINCT(player_id) AS unique_paying_users,
           SUM(in_game_purchases) AS total_revenue,
           AVG(in_game_purchases) AS avg_purchase_value,
           COUNT(*) AS total_purchase_events
    FROM gaming_real_time_intelligence_platform
    WINDOW TUMBLING (SIZE 1 HOUR)
    WHERE has_purchase = true
    GROUP BY game_id
    EMIT CHANGES;

CREATE TABLE gaming_genre_engagement AS
    SELECT game_genre,
           COUNT_DISTINCT(player_id) AS unique_players,
           COUNT(*) AS total_activities,
           AVG(duration_seconds) AS avg_session_duration,
           SUM(achievements_unlocked) AS total_achievements
    FROM gaming_real_time_intelligence_platform
    WINDOW TUMBLING (SIZE 1 HOUR)
    GROUP BY game_genre
    EMIT CHANGES;

CREATE TABLE gaming_player_segments_hourly AS
    SELECT player_segment,
           COUNT_DISTINCT(player_id) AS player_count,
           AVG(score) AS avg_score,
           AVG(duration_seconds) AS avg_session_duration
    FROM gaming_real_time_intelligence_platform
    WINDOW TUMBLING (SIZE 1 HOUR)
    GROUP BY player_segment
    EMIT CHANGES;

CREATE TABLE gaming_high_value_players_daily AS
    SELECT player_id, game_id,
           LATEST_BY_OFFSET(player_username) AS player_username,
           LATEST_BY_OFFSET(game_name) AS game_name,
           SUM(in_game_purchases) AS total_spent,
           COUNT(*) AS purchase_count
    FROM gaming_real_time_intelligence_platform
    WINDOW TUMBLING (SIZE 24 HOURS)
    WHERE has_purchase = true
    GROUP BY player_id, game_id
    EMIT CHANGES;

-- Lag as SPEC §6 defines it: processing time minus event time. (The data
-- product's monitoring query writes UNIX_TIMESTAMP() for processing time;
-- both run, and give the same here: UNIX_TIMESTAMP() is the moment the
-- record is processed.)
CREATE TABLE gaming_processing_lag_1min AS
    SELECT game_id,
           LATEST_BY_OFFSET(game_name) AS game_name,
           COUNT(*) AS event_count,
           MAX(processing_timestamp - event_timestamp) AS max_lag_ms,
           AVG(processing_timestamp - event_timestamp) AS avg_lag_ms
    FROM gaming_real_time_intelligence_platform
    WINDOW TUMBLING (SIZE 1 MINUTE)
    GROUP BY game_id
    EMIT CHANGES;

CREATE TABLE gaming_data_quality_5min AS
    SELECT COUNT(*) AS total_records,
           COUNT(game_name) AS records_with_game_name,
           COUNT(player_username) AS records_with_username,
           (COUNT(game_name) * 100.0 / COUNT(*)) AS game_enrichment_rate,
           (COUNT(player_username) * 100.0 / COUNT(*)) AS player_enrichment_rate
    FROM gaming_real_time_intelligence_platform
    WINDOW TUMBLING (SIZE 5 MINUTES)
    GROUP BY 1
    EMIT CHANGES;
