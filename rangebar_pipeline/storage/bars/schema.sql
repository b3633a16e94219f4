-- Tier 2 bar store (ClickHouse / embedded chDB). `{db}` is replaced by the database name.
-- Statements are separated by ';' at the end of a line; '--' comments are stripped before execution.

CREATE DATABASE IF NOT EXISTS {db};

-- One row per closed range bar. Rows of a (series, threshold, day) carry the `write_id` of the write
-- that produced them; only the version named by `bar_coverage` is visible to readers, so a rewrite is
-- atomic for readers and older versions are garbage (deleted right after the switch).
-- Logical key: (source, market, symbol, threshold_decimal_bps, options, close_time_us,
-- first_agg_trade_id); plain MergeTree, so bars closing in the same microsecond are never collapsed.
-- `options` is BarOptions.key: '' for the plain rule, e.g. 'min_duration_us=1000,lookback_trades=500'
-- otherwise, so bars of different gates or groups never mix. The lookback and intra groups' columns
-- are null for bars computed without them.
-- Schema version 2 (schema.SCHEMA_VERSION). A version-1 store, or a version-2 store from before the
-- intra group, is migrated in place when opened (storage/bars/schema.py adds the new columns where
-- this file has them; no row is rewritten). Parts up to 256 MiB are compact (one file a part): a
-- batch's insert writes ~80 columns, and wide parts cost two files a column (schema.py sets the same
-- on stores created before).
CREATE TABLE IF NOT EXISTS {db}.range_bars
(
    source                 LowCardinality(String),
    market                 LowCardinality(String),
    symbol                 LowCardinality(String),
    threshold_decimal_bps  UInt32,
    options                LowCardinality(String),
    day                    Date,
    write_id               UInt64,
    open_time_us           Int64,
    close_time_us          Int64,
    open                   Float64,
    high                   Float64,
    low                    Float64,
    close                  Float64,
    volume                 Float64,
    vwap                   Float64,
    buy_volume             Float64,
    sell_volume            Float64,
    turnover               Float64,
    buy_turnover           Float64,
    sell_turnover          Float64,
    individual_trade_count Int64,
    agg_record_count       Int64,
    buy_trade_count        Int64,
    sell_trade_count       Int64,
    first_agg_trade_id     Int64,
    last_agg_trade_id      Int64,
    first_trade_id         Int64,
    last_trade_id          Int64,
    duration_us            Int64,
    ofi                    Float64,
    vwap_close_deviation   Float64,
    price_impact           Float64,
    kyle_lambda_proxy      Float64,
    trade_intensity        Float64,
    volume_per_trade       Float64,
    aggression_ratio       Float64,
    aggregation_efficiency Float64,
    turnover_imbalance     Float64,
    spread_min             Nullable(Float64),
    spread_max             Nullable(Float64),
    spread_avg             Nullable(Float64),
    spread_tick_count      Nullable(Int64),
    lookback_trade_count         Nullable(Int64),
    lookback_duration_us         Nullable(Int64),
    lookback_ofi                 Nullable(Float64),
    lookback_count_imbalance     Nullable(Float64),
    lookback_intensity           Nullable(Float64),
    lookback_vwap                Nullable(Float64),
    lookback_vwap_position       Nullable(Float64),
    lookback_price_range         Nullable(Float64),
    lookback_kyle_lambda         Nullable(Float64),
    lookback_kaufman_er          Nullable(Float64),
    lookback_garman_klass_vol    Nullable(Float64),
    lookback_burstiness          Nullable(Float64),
    lookback_volume_skew         Nullable(Float64),
    lookback_volume_kurt         Nullable(Float64),
    lookback_hurst               Nullable(Float64),
    lookback_permutation_entropy Nullable(Float64),
    intra_trade_count            Nullable(Int64),
    intra_duration_us            Nullable(Int64),
    intra_intensity              Nullable(Float64),
    intra_ofi                    Nullable(Float64),
    intra_count_imbalance        Nullable(Float64),
    intra_vwap_position          Nullable(Float64),
    intra_kyle_lambda            Nullable(Float64),
    intra_burstiness             Nullable(Float64),
    intra_volume_skew            Nullable(Float64),
    intra_volume_kurt            Nullable(Float64),
    intra_kaufman_er             Nullable(Float64),
    intra_garman_klass_vol       Nullable(Float64),
    intra_hurst                  Nullable(Float64),
    intra_permutation_entropy    Nullable(Float64),
    intra_max_drawdown           Nullable(Float64),
    intra_max_runup              Nullable(Float64),
    intra_bull_epoch_density     Nullable(Float64),
    intra_bull_excess_gain       Nullable(Float64),
    intra_bull_cv                Nullable(Float64),
    intra_bear_epoch_density     Nullable(Float64),
    intra_bear_excess_gain       Nullable(Float64),
    intra_bear_cv                Nullable(Float64),
    open_time              DateTime64(6, 'UTC') ALIAS fromUnixTimestamp64Micro(open_time_us, 'UTC'),
    close_time             DateTime64(6, 'UTC') ALIAS fromUnixTimestamp64Micro(close_time_us, 'UTC')
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (source, market, symbol, threshold_decimal_bps, day, write_id, close_time_us, first_agg_trade_id)
SETTINGS index_granularity = 8192, min_bytes_for_wide_part = 268435456, min_rows_for_wide_part = 4194304;

-- One row per stored (series, threshold, options, day): which write is current, the processor checkpoint
-- at the end of the day, and the checkpoint it started from (empty = fresh processor). The newest
-- write_id wins (ReplacingMergeTree, read with FINAL); an invalidation is a newer row with is_deleted = 1.
-- schema_version and kernel_version name what produced the day (rows of a migrated version-1 store: 1
-- and ''); a day whose versions differ from the running code's is stale.
CREATE TABLE IF NOT EXISTS {db}.bar_coverage
(
    source                   LowCardinality(String),
    market                   LowCardinality(String),
    symbol                   LowCardinality(String),
    threshold_decimal_bps    UInt32,
    options                  LowCardinality(String),
    day                      Date,
    write_id                 UInt64,
    bar_count                UInt64,
    tick_count               UInt64,
    first_agg_trade_id       Nullable(Int64),
    last_agg_trade_id        Nullable(Int64),
    checkpoint               String,
    checkpoint_sha256        String,
    parent_checkpoint_sha256 String,
    created_at               DateTime64(3, 'UTC') DEFAULT now64(3),
    is_deleted               UInt8 DEFAULT 0,
    schema_version           UInt16 DEFAULT 1,
    kernel_version           LowCardinality(String) DEFAULT ''
)
ENGINE = ReplacingMergeTree(write_id, is_deleted)
PRIMARY KEY (source, market, symbol, threshold_decimal_bps, day)
ORDER BY (source, market, symbol, threshold_decimal_bps, day, options);
