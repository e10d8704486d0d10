use super::*;

fn one(sql: &str) -> StreamStatement {
    let mut v = parse_script(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(v.len(), 1, "{v:?}");
    v.remove(0)
}

#[test]
fn flink_create_table_with_watermark_computed_columns_and_options() {
    let sql = "CREATE TABLE bid (\n  auction BIGINT,\n  price BIGINT,\n  `date_time` TIMESTAMP(3),\n  \
               price_cents AS price * 100,\n  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND,\n  \
               PRIMARY KEY (auction) NOT ENFORCED\n) WITH (\n  'connector' = 'queue',\n  'topic' = 'bids'\n)";
    let StreamStatement::CreateTable(t) = one(sql) else {
        panic!("not a CREATE TABLE");
    };
    assert_eq!(t.name.to_string(), "bid");
    let cols: Vec<String> = t.columns.iter().map(|c| c.name.value.clone()).collect();
    assert_eq!(cols, ["auction", "price", "date_time"]);
    assert_eq!(t.columns[2].data_type.to_string(), "TIMESTAMP(3)");
    assert_eq!(t.computed.len(), 1);
    assert_eq!(t.computed[0].1.to_string(), "price * 100");
    let wm = t.watermark.expect("watermark");
    assert_eq!(wm.column.value, "date_time");
    assert_eq!(wm.expr.to_string(), "date_time - INTERVAL '4' SECOND");
    assert_eq!(t.primary_key[0].value, "auction");
    assert_eq!(
        t.options,
        [
            ("connector".to_string(), "queue".to_string()),
            ("topic".into(), "bids".into())
        ]
    );
    assert_eq!((t.location.line, t.location.column), (1, 1));
}

#[test]
fn window_table_functions_take_table_arguments() {
    let sql = "SELECT window_start, window_end, auction, count(*) \
               FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) \
               GROUP BY window_start, window_end, auction";
    assert!(matches!(one(sql), StreamStatement::Sql(..)));
    let sql = "SELECT * FROM TABLE(SESSION(TABLE clicks PARTITION BY (user_id, page), \
               DESCRIPTOR(ts), INTERVAL '5' MINUTE))";
    let StreamStatement::Sql(s, _) = one(sql) else {
        panic!("not a query");
    };
    let text = s.to_string();
    assert!(
        text.contains("__rstreams_table_arg, clicks, user_id, page"),
        "{text}"
    );
}

#[test]
fn scripts_split_on_semicolons_and_keep_positions() {
    let sql = "SET 'parallelism.default' = '2';\n\nCREATE TABLE t (a INT) WITH ('connector' = 'x');\n  INSERT INTO s SELECT a FROM t;";
    let v = parse_script(sql).unwrap();
    assert_eq!(v.len(), 3);
    match &v[2] {
        StreamStatement::Sql(_, at) => assert_eq!((at.line, at.column), (4, 3)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn errors_name_line_and_column() {
    let e = parse_script("SELECT a\nFROM t\nWHERE a >")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("line 3, column "), "{e}");
    let e = parse_script("CREATE TABLE t (\n  a INT,\n  WATERMARK a AS a\n)")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("line 3, column 13:") && e.contains("FOR"),
        "{e}"
    );
    let e = parse_script("CREATE TABLE t (a INT) WITH ('connector' 'x')")
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 1, column 42") && e.contains("="), "{e}");
}

#[test]
fn row_types_nest_in_either_bracket_style() {
    let sql = "CREATE TABLE nexmark (event_type INT NOT NULL, \
               bid ROW<auction BIGINT, meta ROW<url VARCHAR, at TIMESTAMP(3)>>, \
               person ROW(id BIGINT NOT NULL, name VARCHAR COMMENT 'full name'), \
               deep ROW<a ROW<b ROW<c INT>>>, tail INT) WITH ('connector' = 'nexmark')";
    let StreamStatement::CreateTable(t) = one(sql) else {
        panic!("not a CREATE TABLE");
    };
    let types: Vec<String> = t.columns.iter().map(|c| c.data_type.to_string()).collect();
    assert_eq!(
        types,
        [
            "INT",
            "STRUCT<auction BIGINT, meta STRUCT<url VARCHAR, at TIMESTAMP(3)>>",
            "STRUCT(id BIGINT, name VARCHAR)",
            "STRUCT<a STRUCT<b STRUCT<c INT>>>",
            "INT"
        ]
    );
    assert_eq!(t.columns[0].options.len(), 1, "NOT NULL kept on columns");
    let err = parse_script("CREATE TABLE t (r ROW<a INT, b>) WITH ('connector' = 'x')")
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 1"), "{err}");
}

#[test]
fn scripts_split_into_their_statements_texts() {
    let sql = "SET 'parallelism.default' = '2';\n-- the source\nCREATE TABLE t (\n  a INT, s STRING -- 'é;'\n) WITH ('connector' = 'x');;\n\
               CREATE MATERIALIZED VIEW v AS SELECT a, COUNT(*) AS n FROM t GROUP BY a;\n  SELECT 'ü;' FROM t";
    let parts = split_script(sql).unwrap();
    assert_eq!(
        parts,
        vec![
            "SET 'parallelism.default' = '2'",
            "CREATE TABLE t (\n  a INT, s STRING -- 'é;'\n) WITH ('connector' = 'x')",
            "CREATE MATERIALIZED VIEW v AS SELECT a, COUNT(*) AS n FROM t GROUP BY a",
            "SELECT 'ü;' FROM t",
        ]
    );
    // Each part parses alone to the same statement.
    for p in &parts {
        assert_eq!(parse_script(p).unwrap().len(), 1, "{p}");
    }
    assert!(split_script("SELECT FROM WHERE").is_err());
}
