DROP TABLE IF EXISTS `shop`.`category_totals_dist` ON CLUSTER `shop_cluster`
