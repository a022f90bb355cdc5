CREATE TABLE IF NOT EXISTS `shop`.`category_totals` (`category` String, `cnt` UInt64, `total_price` Decimal(18, 2)) ENGINE = SummingMergeTree() ORDER BY (`category`)
