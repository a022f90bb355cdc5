DROP TABLE IF EXISTS `shop`.`category_totals`
