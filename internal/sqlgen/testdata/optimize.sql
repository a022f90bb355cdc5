OPTIMIZE TABLE `shop`.`category_totals` FINAL
