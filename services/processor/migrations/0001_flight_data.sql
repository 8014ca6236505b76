-- One row per position report. The primary key makes a replayed or redelivered record
-- a no-op (`ON CONFLICT DO NOTHING`), which is what turns at-least-once delivery from
-- Kafka into exactly-once rows.
CREATE TABLE IF NOT EXISTS flight_data (
    icao24          text             NOT NULL,
    callsign        text,
    origin_country  text,
    time_position   timestamptz      NOT NULL,
    last_contact    timestamptz      NOT NULL,
    longitude       double precision NOT NULL,
    latitude        double precision NOT NULL,
    baro_altitude   double precision,
    on_ground       boolean          NOT NULL,
    velocity        double precision,
    true_track      double precision,
    vertical_rate   double precision,
    geo_altitude    double precision,
    squawk          text,
    spi             boolean          NOT NULL,
    position_source smallint         NOT NULL,
    category        smallint,
    snapshot_time   timestamptz      NOT NULL,
    ingested_at     timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (icao24, time_position)
);

-- The dashboard groups by country and time.
CREATE INDEX IF NOT EXISTS flight_data_origin_country_idx ON flight_data (origin_country);
CREATE INDEX IF NOT EXISTS flight_data_snapshot_time_idx ON flight_data (snapshot_time);
