CREATE TABLE IF NOT EXISTS `we\`ird`.`tar'get` ON CLUSTER `c\`l` (`category` String, `cnt` UInt64, `total_price` Decimal(18, 2)) ENGINE = SummingMergeTree() ORDER BY (`category`);
CREATE MATERIALIZED VIEW IF NOT EXISTS `we\`ird`.`mv\\` ON CLUSTER `c\`l` TO `we\`ird`.`tar'get` AS SELECT category, count() AS cnt, sum(price) AS total_price FROM `we\`ird`.`src\`; DROP TABLE x; --` WHERE `k\`ey` > 7 GROUP BY category;
CREATE TABLE IF NOT EXISTS `we\`ird`.`dist
` ON CLUSTER `c\`l` AS `we\`ird`.`tar'get` ENGINE = Distributed('c`l', 'we`ird', 'tar\'get', rand());
INSERT INTO `we\`ird`.`tar'get` (`category`, `cnt`, `total_price`) SELECT `category`, `cnt`, `total_price` FROM (SELECT category, count() AS cnt, sum(price) AS total_price FROM `we\`ird`.`src\`; DROP TABLE x; --` WHERE `k\`ey` <= 7 GROUP BY category) ORDER BY `category`, `cnt`, `total_price`;
OPTIMIZE TABLE `we\`ird`.`tar'get` ON CLUSTER `c\`l` FINAL;
DROP TABLE IF EXISTS `we\`ird`.`mv\\` ON CLUSTER `c\`l`;
