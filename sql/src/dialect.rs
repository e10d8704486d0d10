//! Flink's dialect as an extension of sqlparser's generic one: what DataFusion parses, plus
//! `TABLE name [PARTITION BY cols]` as the first argument of a window table function.

use streams_core::datafusion::sql::sqlparser::ast::{Expr, Ident};
use streams_core::datafusion::sql::sqlparser::dialect::{Dialect, GenericDialect};
use streams_core::datafusion::sql::sqlparser::keywords::Keyword;
use streams_core::datafusion::sql::sqlparser::parser::{Parser, ParserError};
use streams_core::datafusion::sql::sqlparser::tokenizer::Token;

/// The marker that stands for `TABLE name` inside an expression: a tuple whose first element is
/// this identifier, then the table name, then the `PARTITION BY` columns.
pub(crate) const TABLE_ARG: &str = "__rstreams_table_arg";

/// The dialect rstreams parses.
#[derive(Debug, Default)]
pub struct FlinkDialect {
    generic: GenericDialect,
}

macro_rules! forward {
    ($($name:ident),* $(,)?) => {
        $(fn $name(&self) -> bool { self.generic.$name() })*
    };
}

impl Dialect for FlinkDialect {
    fn is_identifier_start(&self, ch: char) -> bool {
        self.generic.is_identifier_start(ch)
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        self.generic.is_identifier_part(ch)
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        // Flink quotes identifiers with backticks; double quotes work too, as in DataFusion.
        ch == '`' || ch == '"'
    }

    forward!(
        supports_group_by_expr,
        supports_filter_during_aggregation,
        supports_window_function_null_treatment_arg,
        supports_window_clause_named_window_reference,
        supports_named_fn_args_with_assignment_operator,
        supports_dictionary_syntax,
        support_map_literal_syntax,
        supports_struct_literal,
        supports_unicode_string_literal,
        supports_partition_by_after_order_by,
        supports_interval_options,
        supports_nested_comments,
        supports_string_escape_constant,
        supports_limit_comma,
        supports_from_first_select,
        supports_projection_trailing_commas,
        supports_parenthesized_set_variables,
        supports_values_as_table_factor,
        supports_parens_around_table_factor,
        allow_extract_custom,
        allow_extract_single_quotes,
    );

    fn parse_prefix(&self, parser: &mut Parser) -> Option<Result<Expr, ParserError>> {
        // `TABLE bid` as an argument: TABLE followed by a name (not `TABLE(`, the outer form).
        let is_table =
            matches!(&parser.peek_token().token, Token::Word(w) if w.keyword == Keyword::TABLE);
        let then_name = matches!(&parser.peek_nth_token(1).token, Token::Word(_));
        if !(is_table && then_name) {
            return None;
        }
        parser.next_token();
        Some(table_argument(parser))
    }
}

fn table_argument(parser: &mut Parser) -> Result<Expr, ParserError> {
    let name = parser.parse_object_name(false)?;
    let mut parts = vec![
        Expr::Identifier(Ident::new(TABLE_ARG)),
        Expr::CompoundIdentifier(
            name.0
                .iter()
                .filter_map(|p| p.as_ident().cloned())
                .collect(),
        ),
    ];
    // `PARTITION BY k` or `PARTITION BY (k1, k2)`: a bare list would swallow the arguments
    // that follow.
    if parser.parse_keywords(&[Keyword::PARTITION, Keyword::BY]) {
        if parser.consume_token(&Token::LParen) {
            parts.extend(parser.parse_comma_separated(Parser::parse_expr)?);
            parser.expect_token(&Token::RParen)?;
        } else {
            parts.push(parser.parse_expr()?);
        }
    }
    Ok(Expr::Tuple(parts))
}
