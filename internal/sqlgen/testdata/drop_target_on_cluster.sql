DROP TABLE IF EXISTS `shop`.`category_totals` ON CLUSTER `shop_cluster`
