// output.h: what a `tally` command prints, in the four forms it can take.
//
// A command's answer is a Doc: top-level fields (a balance's `available`, an
// allocation's `pool_after`) and named tables (a balance's `lots`, a
// history's `entries`).  The same Doc renders as
//   - text for people: `key  value` lines, then aligned tables;
//   - JSON for scripts: one object, fields by name, each table an array of
//     objects whose keys are the column names (SPEC §5 fixes those names);
//   - CSV (RFC 4180) and XLSX for spreadsheets: the Doc's first table only,
//     header row first.
// Keeping one Doc per answer is what makes the four forms agree.
//
// Example:
//   Doc doc;
//   doc.Add("available", int64_t{70});
//   Table& lots = doc.AddTable("lots", {"grant_id", "remaining"});
//   lots.rows.push_back({uint64_t{3}, int64_t{70}});
//   std::string json = RenderJson(doc);  // {"available":70,"lots":[{"grant_id":3,...}]}
#ifndef TALLY_TOOLS_CLI_OUTPUT_H_
#define TALLY_TOOLS_CLI_OUTPUT_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"

namespace tally::cli {

// Cell is one value: null, a boolean, a signed or unsigned integer, or text.
using Cell = std::variant<std::monostate, bool, int64_t, uint64_t, std::string>;

// Table is rows of cells under named columns.
struct Table {
  std::string name;
  std::vector<std::string> columns;
  std::vector<std::vector<Cell>> rows;
};

// Doc is one command's answer.
struct Doc {
  std::vector<std::pair<std::string, Cell>> fields;
  std::vector<Table> tables;

  void Add(std::string key, Cell value) { fields.emplace_back(std::move(key), std::move(value)); }
  Table& AddTable(std::string name, std::vector<std::string> columns) {
    tables.push_back({std::move(name), std::move(columns), {}});
    return tables.back();
  }
};

// JsonEscape returns `text` as a JSON string literal, quotes included.
std::string JsonEscape(std::string_view text);
// CellJson / CellText render one cell (text: null prints as `-`).
std::string CellJson(const Cell& cell);
std::string CellText(const Cell& cell);

// RenderJson: one line, a single object, ending in a newline.
std::string RenderJson(const Doc& doc);
// RenderText: fields as aligned `key  value` lines, then each table with a
// header, numbers right-aligned.  An empty table prints `(no <name>)`.
std::string RenderText(const Doc& doc);
// RenderCsv: the first table as CSV with a header row (CRLF line ends, as
// RFC 4180 and spreadsheets expect).
std::string RenderCsv(const Doc& doc);
// WriteXlsx writes every table of the Doc (one worksheet each, header row in
// bold, integers as numbers where a spreadsheet keeps them exact, i.e. below
// 2^53, else as text) to `path`.  The error names the path.
absl::Status WriteXlsx(const Doc& doc, const std::string& path);

}  // namespace tally::cli

#endif  // TALLY_TOOLS_CLI_OUTPUT_H_
