CREATE TABLE IF NOT EXISTS `shop`.`category_totals_dist` ON CLUSTER `shop_cluster` AS `shop`.`category_totals` ENGINE = Distributed('shop_cluster', 'shop', 'category_totals', rand())
