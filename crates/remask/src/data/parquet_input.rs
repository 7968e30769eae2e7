//! Parquet input: the documents of one string column (cargo feature `parquet`, on by default). A
//! build without the feature refuses Parquet files with an error that says how to get it.

use std::path::Path;

use crate::{Error, Result};

/// The non-empty strings of column `column` of the Parquet file `path`, in row order (nulls skipped).
pub fn column_strings(path: &Path, column: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for_each_string(path, column, &mut |s| {
        out.push(s);
        Ok(())
    })?;
    Ok(out)
}

/// Streams the non-empty strings of column `column` of the Parquet file `path` to `f`, in row order
/// (nulls skipped), one row at a time.
#[cfg(feature = "parquet")]
pub fn for_each_string(
    path: &Path,
    column: &str,
    f: &mut dyn FnMut(String) -> Result<()>,
) -> Result<()> {
    // The parquet crate can panic on a malformed file (found by fuzzing): report it as bad input.
    crate::guard::catch_panic(|| strings_unguarded(path, column, f))
        .map_err(|m| Error::data(path, format!("not a readable Parquet file ({m})")))?
}

#[cfg(feature = "parquet")]
fn strings_unguarded(
    path: &Path,
    column: &str,
    f: &mut dyn FnMut(String) -> Result<()>,
) -> Result<()> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::RowAccessor;

    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let reader = SerializedFileReader::new(file)
        .map_err(|e| Error::data(path, format!("not a readable Parquet file: {e}")))?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let root = schema.root_schema();
    let fields = root.get_fields();
    let Some(field) = fields.iter().find(|f| f.name() == column) else {
        let names: Vec<&str> = fields.iter().map(|f| f.name()).collect();
        return Err(Error::data(
            path,
            format!("no column `{column}` (columns: {names:?}); set data.text_field"),
        ));
    };
    let projection = parquet::schema::types::Type::group_type_builder(root.name())
        .with_fields(vec![field.clone()])
        .build()
        .map_err(|e| Error::data(path, format!("column `{column}`: {e}")))?;
    let rows = reader
        .get_row_iter(Some(projection))
        .map_err(|e| Error::data(path, format!("column `{column}`: {e}")))?;
    for (n, row) in rows.enumerate() {
        let row = row.map_err(|e| Error::data(path, format!("row {n}: {e}")))?;
        match row.get_string(0) {
            Ok(s) => {
                if !s.trim().is_empty() {
                    f(s.clone())?;
                }
            }
            Err(_) => {
                // Null values are skipped; anything else is not a string column.
                if row
                    .get_column_iter()
                    .next()
                    .is_some_and(|(_, f)| !matches!(f, parquet::record::Field::Null))
                {
                    return Err(Error::data(
                        path,
                        format!("column `{column}` is not a string column (row {n})"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Without the `parquet` feature: an error naming the file and the feature.
#[cfg(not(feature = "parquet"))]
pub fn for_each_string(
    path: &Path,
    _column: &str,
    _f: &mut dyn FnMut(String) -> Result<()>,
) -> Result<()> {
    Err(Error::data(
        path,
        "is Parquet, but this remask was built without the `parquet` feature: rebuild with it (it is on by default; drop `--no-default-features` or add `--features parquet`), or convert the file to JSONL",
    ))
}

#[cfg(all(test, not(feature = "parquet")))]
mod tests {
    #[test]
    fn a_build_without_the_feature_names_it() {
        let e = super::column_strings(std::path::Path::new("corpus/part-0.parquet"), "text")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("part-0.parquet") && e.contains("`parquet` feature") && !e.contains('\n'),
            "{e}"
        );
    }
}
