OPTIMIZE TABLE `shop`.`category_totals` ON CLUSTER `shop_cluster` FINAL
