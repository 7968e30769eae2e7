//! Parquet input: the documents of one string column (cargo feature `parquet`, on by default). A
//! build without the feature refuses Parquet files with an error that says how to get it.

use std::path::Path;

use crate::{Error, Result};

/// The non-empty strings of column `column` of the Parquet file `path`, in row order (nulls skipped).
#[cfg(feature = "parquet")]
pub fn column_strings(path: &Path, column: &str) -> Result<Vec<String>> {
    // The parquet crate can panic on a malformed file (found by fuzzing): report it as bad input.
    crate::guard::catch_panic(|| column_strings_unguarded(path, column))
        .map_err(|m| Error::data(path, format!("not a readable Parquet file ({m})")))?
}

#[cfg(feature = "parquet")]
fn column_strings_unguarded(path: &Path, column: &str) -> Result<Vec<String>> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::RowAccessor;

    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let reader =
        SerializedFileReader::new(file).map_err(|e| Error::data(path, format!("not a readable Parquet file: {e}")))?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let root = schema.root_schema();
    let fields = root.get_fields();
    let Some(field) = fields.iter().find(|f| f.name() == column) else {
        let names: Vec<&str> = fields.iter().map(|f| f.name()).collect();
        return Err(Error::data(path, format!("no column `{column}` (columns: {names:?}); set data.text_field")));
    };
    let projection = parquet::schema::types::Type::group_type_builder(root.name())
        .with_fields(vec![field.clone()])
        .build()
        .map_err(|e| Error::data(path, format!("column `{column}`: {e}")))?;
    let rows = reader
        .get_row_iter(Some(projection))
        .map_err(|e| Error::data(path, format!("column `{column}`: {e}")))?;
    let mut out = Vec::new();
    for (n, row) in rows.enumerate() {
        let row = row.map_err(|e| Error::data(path, format!("row {n}: {e}")))?;
        match row.get_string(0) {
            Ok(s) => {
                if !s.trim().is_empty() {
                    out.push(s.clone());
                }
            }
            Err(_) => {
                // Null values are skipped; anything else is not a string column.
                if row.get_column_iter().next().is_some_and(|(_, f)| !matches!(f, parquet::record::Field::Null)) {
                    return Err(Error::data(path, format!("column `{column}` is not a string column (row {n})")));
                }
            }
        }
    }
    Ok(out)
}

/// Without the `parquet` feature: an error naming the file and the feature.
#[cfg(not(feature = "parquet"))]
pub fn column_strings(path: &Path, _column: &str) -> Result<Vec<String>> {
    Err(Error::data(
        path,
        "is Parquet, but this remask was built without the `parquet` feature: rebuild with it (it is on by default; drop `--no-default-features` or add `--features parquet`), or convert the file to JSONL",
    ))
}

#[cfg(all(test, not(feature = "parquet")))]
mod tests {
    #[test]
    fn a_build_without_the_feature_names_it() {
        let e = super::column_strings(std::path::Path::new("corpus/part-0.parquet"), "text").unwrap_err().to_string();
        assert!(e.contains("part-0.parquet") && e.contains("`parquet` feature") && !e.contains('\n'), "{e}");
    }
}
