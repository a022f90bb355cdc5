DROP TABLE IF EXISTS `shop`.`category_totals_mv` ON CLUSTER `shop_cluster`
