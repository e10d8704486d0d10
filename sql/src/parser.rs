//! Splitting a script into statements and parsing them. Everything DataFusion's parser knows
//! is parsed by sqlparser (with [`FlinkDialect`]); `CREATE TABLE`, whose Flink form carries
//! `WATERMARK FOR`, computed columns and `WITH` options, is parsed here with the same parser's
//! token API, so positions in errors stay those of the original text.

use streams_core::datafusion::sql::sqlparser::ast::{
    ColumnDef, ColumnOptionDef, DataType, Expr, Ident, ObjectName, Query, Statement,
    StructBracketKind, StructField,
};
use streams_core::datafusion::sql::sqlparser::keywords::Keyword;
use streams_core::datafusion::sql::sqlparser::parser::{Parser, ParserError};
use streams_core::datafusion::sql::sqlparser::tokenizer::{Location, Token};

use crate::dialect::FlinkDialect;
use crate::{Error, Result};

/// `WATERMARK FOR column AS expr`.
#[derive(Clone, Debug, PartialEq)]
pub struct WatermarkDef {
    /// The event-time column.
    pub column: Ident,
    /// The watermark expression, usually `column - INTERVAL '5' SECOND`.
    pub expr: Expr,
}

/// A Flink `CREATE TABLE`.
#[derive(Clone, Debug, PartialEq)]
pub struct CreateTable {
    /// Table name.
    pub name: ObjectName,
    /// `CREATE TEMPORARY TABLE`.
    pub temporary: bool,
    /// `IF NOT EXISTS`.
    pub if_not_exists: bool,
    /// Physical columns, in order.
    pub columns: Vec<ColumnDef>,
    /// Computed columns `name AS expr`, in order, after the physical ones.
    pub computed: Vec<(Ident, Expr)>,
    /// The watermark declaration, if any.
    pub watermark: Option<WatermarkDef>,
    /// `PRIMARY KEY (...) NOT ENFORCED` columns.
    pub primary_key: Vec<Ident>,
    /// `WITH ('key' = 'value', ...)`, in order.
    pub options: Vec<(String, String)>,
    /// Where the statement starts.
    pub location: Location,
}

/// `CREATE MATERIALIZED VIEW name [WITH ('key' = 'value', ...)] AS query`.
#[derive(Clone, Debug, PartialEq)]
pub struct CreateMaterializedView {
    /// The view.
    pub name: ObjectName,
    /// `IF NOT EXISTS`.
    pub if_not_exists: bool,
    /// `WITH ('key' = 'value', ...)`, in order.
    pub options: Vec<(String, String)>,
    /// What it holds.
    pub query: Box<Query>,
    /// Where the statement starts.
    pub location: Location,
}

/// One statement of a script.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamStatement {
    /// `CREATE TABLE` in Flink's form.
    CreateTable(Box<CreateTable>),
    /// `CREATE MATERIALIZED VIEW`: a job keeping the query's result for analysts.
    CreateMaterializedView(Box<CreateMaterializedView>),
    /// `SET 'key' = 'value'` (Flink's job options).
    Set {
        /// Option key.
        key: String,
        /// Value as written.
        value: String,
        /// Where the statement starts.
        location: Location,
    },
    /// `EXECUTE STATEMENT SET BEGIN ... END`: its `INSERT INTO` and `CREATE MATERIALIZED VIEW`
    /// statements run as one job, whose sinks commit at the same checkpoints.
    StatementSet {
        /// The statements, in order.
        statements: Vec<StreamStatement>,
        /// Where the set starts.
        location: Location,
    },
    /// Anything else, as sqlparser parsed it, with where it starts.
    Sql(Box<Statement>, Location),
}

/// Parses a script of `;`-separated statements.
pub fn parse_script(sql: &str) -> Result<Vec<StreamStatement>> {
    Ok(parse_with_spans(sql)?.into_iter().map(|(s, _)| s).collect())
}

/// The text of each statement of a script (without its `;`), after checking that they parse:
/// for programs that run, keep or forget statements one at a time.
pub fn split_script(sql: &str) -> Result<Vec<String>> {
    Ok(parse_with_spans(sql)?
        .into_iter()
        .map(|(_, span)| sql[span].trim().to_string())
        .collect())
}

/// The byte offset of a tokenizer location (1-based line, 1-based column in characters).
fn offset(sql: &str, at: Location) -> usize {
    if at.line == 0 {
        return sql.len();
    }
    let line_start: usize = sql
        .split_inclusive('\n')
        .take(at.line as usize - 1)
        .map(str::len)
        .sum();
    let column = at.column.saturating_sub(1) as usize;
    line_start
        + sql[line_start.min(sql.len())..]
            .char_indices()
            .nth(column)
            .map_or(sql.len() - line_start.min(sql.len()), |(i, _)| i)
}

fn parse_with_spans(sql: &str) -> Result<Vec<(StreamStatement, std::ops::Range<usize>)>> {
    let dialect = FlinkDialect::default();
    let parse_error = |e| parse_error(e, sql);
    let mut parser = Parser::new(&dialect)
        .try_with_sql(sql)
        .map_err(parse_error)?;
    let mut out = Vec::new();
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        if parser.peek_token().token == Token::EOF {
            break;
        }
        let location = parser.peek_token().span.start;
        let statement = if is_statement_set(&parser) {
            statement_set(&mut parser, location).map_err(parse_error)?
        } else {
            one_statement(&mut parser, location).map_err(parse_error)?
        };
        let next = parser.peek_token();
        let end = if next.token == Token::EOF {
            sql.len()
        } else {
            offset(sql, next.span.start)
        };
        out.push((
            statement,
            offset(sql, location)..end.max(offset(sql, location)),
        ));
        if next.token != Token::EOF && next.token != Token::SemiColon {
            return Err(Error::Parse {
                line: next.span.start.line,
                column: next.span.start.column,
                message: format!(
                    "expected ';' or the end of the script, found {}",
                    next.token
                ),
            });
        }
    }
    Ok(out)
}

fn parse_error(e: ParserError, sql: &str) -> Error {
    let text = match e {
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m,
        ParserError::RecursionLimitExceeded => "the statement nests too deeply".to_string(),
    };
    // sqlparser appends " at Line: L, Column: C"; keep the message and lift the position.
    if let Some(at) = text.rfind(" at Line: ") {
        let (message, position) = text.split_at(at);
        let mut nums = position
            .split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.parse::<u64>().ok());
        if let (Some(line), Some(column)) = (nums.next(), nums.next())
            && line > 0
        {
            return Error::Parse {
                line,
                column,
                message: message.trim_start_matches("sql parser error: ").to_string(),
            };
        }
    }
    // Errors at the end of the text (an unfinished statement) come without a position.
    let line = sql.split('\n').count() as u64;
    let column = sql.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u64 + 1;
    let message = match text.rfind(" at Line: ") {
        Some(at) => text[..at].to_string(),
        None => text,
    };
    Error::Parse {
        line,
        column,
        message: message.trim_start_matches("sql parser error: ").to_string(),
    }
}

/// One statement that is not a statement set.
fn one_statement(p: &mut Parser, location: Location) -> Result<StreamStatement, ParserError> {
    Ok(if is_quoted_set(p) {
        p.next_token();
        let key = p.parse_literal_string()?;
        p.expect_token(&Token::Eq)?;
        let value = p.parse_literal_string()?;
        StreamStatement::Set {
            key,
            value,
            location,
        }
    } else if is_create_materialized_view(p) {
        StreamStatement::CreateMaterializedView(Box::new(create_materialized_view(p, location)?))
    } else if is_create_table(p) {
        StreamStatement::CreateTable(Box::new(create_table(p, location)?))
    } else {
        StreamStatement::Sql(Box::new(p.parse_statement()?), location)
    })
}

/// `EXECUTE STATEMENT SET BEGIN ... END` (Flink's word order).
fn is_statement_set(p: &Parser) -> bool {
    let word = |n: usize| match &p.peek_nth_token(n).token {
        Token::Word(w) => Some(w.value.to_ascii_uppercase()),
        _ => None,
    };
    word(0).as_deref() == Some("EXECUTE")
        && word(1).as_deref() == Some("STATEMENT")
        && word(2).as_deref() == Some("SET")
}

/// `EXECUTE STATEMENT SET BEGIN stmt; stmt; ... END`: the statements (`INSERT INTO` and
/// `CREATE MATERIALIZED VIEW`) become one job.
fn statement_set(p: &mut Parser, location: Location) -> Result<StreamStatement, ParserError> {
    for _ in 0..3 {
        p.next_token();
    }
    p.expect_keyword(Keyword::BEGIN)?;
    let mut statements = Vec::new();
    loop {
        while p.consume_token(&Token::SemiColon) {}
        if p.parse_keyword(Keyword::END) {
            break;
        }
        let at = p.peek_token();
        if at.token == Token::EOF {
            return p.expected("END to close the STATEMENT SET", at);
        }
        let statement = one_statement(p, at.span.start)?;
        let allowed = matches!(statement, StreamStatement::CreateMaterializedView(_))
            || matches!(&statement, StreamStatement::Sql(s, _) if matches!(**s, Statement::Insert(_)));
        if !allowed {
            return Err(ParserError::ParserError(format!(
                "a STATEMENT SET holds INSERT INTO and CREATE MATERIALIZED VIEW statements only \
                 at Line: {}, Column: {}",
                at.span.start.line, at.span.start.column
            )));
        }
        statements.push(statement);
        let next = p.peek_token();
        if next.token != Token::SemiColon
            && !matches!(&next.token, Token::Word(w) if w.keyword == Keyword::END)
        {
            return p.expected("';' or END", next);
        }
    }
    if statements.is_empty() {
        return Err(ParserError::ParserError(format!(
            "the STATEMENT SET is empty at Line: {}, Column: {}",
            location.line, location.column
        )));
    }
    Ok(StreamStatement::StatementSet {
        statements,
        location,
    })
}

fn is_quoted_set(p: &Parser) -> bool {
    matches!(&p.peek_token().token, Token::Word(w) if w.keyword == Keyword::SET)
        && matches!(p.peek_nth_token(1).token, Token::SingleQuotedString(_))
}

fn is_create_materialized_view(p: &Parser) -> bool {
    let word = |n: usize| match &p.peek_nth_token(n).token {
        Token::Word(w) => Some(w.keyword),
        _ => None,
    };
    word(0) == Some(Keyword::CREATE)
        && word(1) == Some(Keyword::MATERIALIZED)
        && word(2) == Some(Keyword::VIEW)
}

fn create_materialized_view(
    p: &mut Parser,
    location: Location,
) -> Result<CreateMaterializedView, ParserError> {
    p.expect_keywords(&[Keyword::CREATE, Keyword::MATERIALIZED, Keyword::VIEW])?;
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = p.parse_object_name(false)?;
    let options = with_options(p)?;
    p.expect_keyword(Keyword::AS)?;
    let query = p.parse_query()?;
    Ok(CreateMaterializedView {
        name,
        if_not_exists,
        options,
        query,
        location,
    })
}

/// `WITH ('key' = 'value', ...)` if it comes next.
fn with_options(p: &mut Parser) -> Result<Vec<(String, String)>, ParserError> {
    let mut options = Vec::new();
    if p.parse_keyword(Keyword::WITH) {
        p.expect_token(&Token::LParen)?;
        if !p.consume_token(&Token::RParen) {
            options = p.parse_comma_separated(|p| {
                let key = p.parse_literal_string()?;
                p.expect_token(&Token::Eq)?;
                let value = p.parse_literal_string()?;
                Ok((key, value))
            })?;
            p.expect_token(&Token::RParen)?;
        }
    }
    Ok(options)
}

fn is_create_table(p: &Parser) -> bool {
    let word = |n: usize| match &p.peek_nth_token(n).token {
        Token::Word(w) => Some(w.keyword),
        _ => None,
    };
    word(0) == Some(Keyword::CREATE)
        && (word(1) == Some(Keyword::TABLE)
            || (word(1) == Some(Keyword::TEMPORARY) && word(2) == Some(Keyword::TABLE)))
}

fn create_table(p: &mut Parser, location: Location) -> Result<CreateTable, ParserError> {
    p.expect_keyword(Keyword::CREATE)?;
    let temporary = p.parse_keyword(Keyword::TEMPORARY);
    p.expect_keyword(Keyword::TABLE)?;
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = p.parse_object_name(false)?;
    let mut table = CreateTable {
        name,
        temporary,
        if_not_exists,
        columns: Vec::new(),
        computed: Vec::new(),
        watermark: None,
        primary_key: Vec::new(),
        options: Vec::new(),
        location,
    };
    p.expect_token(&Token::LParen)?;
    loop {
        table_element(p, &mut table)?;
        if p.consume_token(&Token::Comma) {
            continue;
        }
        p.expect_token(&Token::RParen)?;
        break;
    }
    if p.parse_keyword(Keyword::COMMENT) {
        p.parse_literal_string()?;
    }
    if p.parse_keywords(&[Keyword::PARTITIONED, Keyword::BY]) {
        p.expect_token(&Token::LParen)?;
        p.parse_comma_separated(Parser::parse_identifier)?;
        p.expect_token(&Token::RParen)?;
    }
    table.options = with_options(p)?;
    Ok(table)
}

/// Consumes the next token if it is the word `word` (for words sqlparser has no keyword for).
fn parse_word(p: &mut Parser, word: &str) -> bool {
    let found = matches!(&p.peek_token().token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word));
    if found {
        p.next_token();
    }
    found
}

fn table_element(p: &mut Parser, t: &mut CreateTable) -> Result<(), ParserError> {
    if parse_word(p, "WATERMARK") {
        p.expect_keyword(Keyword::FOR)?;
        let column = p.parse_identifier()?;
        p.expect_keyword(Keyword::AS)?;
        let expr = p.parse_expr()?;
        if t.watermark.is_some() {
            return p.expected("only one WATERMARK declaration", p.peek_token());
        }
        t.watermark = Some(WatermarkDef { column, expr });
        return Ok(());
    }
    if p.parse_keyword(Keyword::CONSTRAINT) {
        p.parse_identifier()?;
    }
    if p.parse_keywords(&[Keyword::PRIMARY, Keyword::KEY]) {
        p.expect_token(&Token::LParen)?;
        t.primary_key = p.parse_comma_separated(Parser::parse_identifier)?;
        p.expect_token(&Token::RParen)?;
        // Flink requires it: rstreams does not enforce keys either.
        p.expect_keywords(&[Keyword::NOT, Keyword::ENFORCED])?;
        return Ok(());
    }
    // `name AS expr` is a computed column; anything else a physical column definition.
    let computed = matches!(p.peek_token().token, Token::Word(_))
        && matches!(&p.peek_nth_token(1).token, Token::Word(w) if w.keyword == Keyword::AS);
    if computed {
        let name = p.parse_identifier()?;
        p.expect_keyword(Keyword::AS)?;
        let expr = p.parse_expr()?;
        t.computed.push((name, expr));
        return Ok(());
    }
    let name = p.parse_identifier()?;
    let data_type = data_type(p, &mut false)?;
    let mut options = Vec::new();
    while let Some(option) = p.parse_optional_column_option()? {
        options.push(ColumnOptionDef { name: None, option });
    }
    t.columns.push(ColumnDef {
        name,
        data_type,
        options,
    });
    Ok(())
}

/// A column type, with Flink's `ROW<name type, ...>` / `ROW(name type, ...)` (which sqlparser
/// does not parse) as a struct. `closed` is set when a nested row's `>>` also closed this one.
fn data_type(p: &mut Parser, closed: &mut bool) -> Result<DataType, ParserError> {
    let is_row = matches!(&p.peek_token().token, Token::Word(w) if w.keyword == Keyword::ROW)
        && matches!(p.peek_nth_token(1).token, Token::Lt | Token::LParen);
    if !is_row {
        return p.parse_data_type();
    }
    p.next_token();
    let angle = p.consume_token(&Token::Lt);
    if !angle {
        p.expect_token(&Token::LParen)?;
    }
    let mut fields = Vec::new();
    let mut inner_closed = false;
    loop {
        let field_name = p.parse_identifier()?;
        let field_type = data_type(p, &mut inner_closed)?;
        if !inner_closed {
            // Field constraints and comments are accepted and not kept, as in Flink.
            let _ =
                p.parse_keywords(&[Keyword::NOT, Keyword::NULL]) || p.parse_keyword(Keyword::NULL);
            if p.parse_keyword(Keyword::COMMENT) {
                p.parse_literal_string()?;
            }
        }
        fields.push(StructField {
            field_name: Some(field_name),
            field_type,
            options: None,
        });
        if inner_closed {
            // `ROW<a ROW<b INT>>`: the `>>` closed both.
            break;
        }
        if !p.consume_token(&Token::Comma) {
            break;
        }
    }
    if !inner_closed {
        if !angle {
            p.expect_token(&Token::RParen)?;
        } else if p.consume_token(&Token::ShiftRight) {
            *closed = true;
        } else {
            p.expect_token(&Token::Gt)?;
        }
    }
    let kind = if angle {
        StructBracketKind::AngleBrackets
    } else {
        StructBracketKind::Parentheses
    };
    Ok(DataType::Struct(fields, kind))
}

#[cfg(test)]
mod tests;
