// tqplot: turns a trainer metrics file (one JSON object per line, each with an integer "step") into
// PNG plots a person can look at.
//
//   tqplot runs/tequila-1b/metrics.jsonl --out runs/tequila-1b/plots [--keys loss,lr,valid_loss]
//
// Nested objects are flattened with dots ("diagnostics": {"q_proj": {"dead_fraction": ..}} becomes
// diagnostics.q_proj.dead_fraction). Every numeric key (or each of --keys) gives KEY.png, a line
// plot against step; keys may be sparse (valid_loss every few hundred steps). Every array of
// numbers whose key ends in "hist" (the DeadZoneMonitor's |w|/Δ histogram) gives KEY.png as a bar
// chart of its latest value, over [0, hist_max] when a sibling "hist_max" is present, with the
// dead-zone edge r = 1 marked. Text is drawn with a built-in 5×7 bitmap font (upper case; lower
// case is shown as upper case). Bad lines are errors naming FILE:LINE. See docs/diagnostics.md.
#include <png.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "core/error.h"
#include "core/json.h"

namespace {

namespace fs = std::filesystem;
using tq::Json;

// ---- a 5×7 bitmap font: 7 rows per glyph, bit 4 = leftmost column ----

struct Glyph {
  char c;
  std::array<uint8_t, 7> rows;
};

constexpr Glyph kFont[] = {
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}},
    {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}},
    {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}},
    {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}},
    {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}},
    {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'A', {0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11}},
    {'B', {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}},
    {'C', {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}},
    {'D', {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C}},
    {'E', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}},
    {'F', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}},
    {'G', {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}},
    {'H', {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'I', {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'J', {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}},
    {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}},
    {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}},
    {'M', {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}},
    {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}},
    {'O', {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
    {'P', {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}},
    {'Q', {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D}},
    {'R', {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}},
    {'S', {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}},
    {'T', {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
    {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04}},
    {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}},
    {'X', {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11}},
    {'Y', {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04}},
    {'Z', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F}},
    {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}},
    {'-', {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00}},
    {'_', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F}},
    {'+', {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00}},
    {':', {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00}},
    {'/', {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00}},
    {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}},
    {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}},
    {',', {0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08}},
    {'=', {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00}},
    {'%', {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03}},
    {'[', {0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E}},
    {']', {0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E}},
    {'|', {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'<', {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02}},
    {'>', {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08}},
    {' ', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}},
    {'?', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04}},
};

const std::array<uint8_t, 7>& glyph_of(char c) {
  if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  for (const Glyph& g : kFont)
    if (g.c == c) return g.rows;
  for (const Glyph& g : kFont)
    if (g.c == '?') return g.rows;
  return kFont[0].rows;
}

// ---- raster ----

struct Rgb {
  uint8_t r, g, b;
};
constexpr Rgb kWhite{255, 255, 255}, kBlack{0, 0, 0}, kGrid{225, 225, 225}, kBlue{31, 90, 180},
    kRed{200, 40, 40}, kBar{90, 140, 210};

struct Image {
  int w, h;
  std::vector<uint8_t> px;  // [h, w, 3]
  Image(int w_, int h_)
      : w(w_), h(h_), px(static_cast<size_t>(w_) * static_cast<size_t>(h_) * 3, 255) {}
  void set(int x, int y, Rgb c) {
    if (x < 0 || y < 0 || x >= w || y >= h) return;
    uint8_t* p =
        &px[(static_cast<size_t>(y) * static_cast<size_t>(w) + static_cast<size_t>(x)) * 3];
    p[0] = c.r;
    p[1] = c.g;
    p[2] = c.b;
  }
  void hline(int x0, int x1, int y, Rgb c) {
    for (int x = std::min(x0, x1); x <= std::max(x0, x1); ++x) set(x, y, c);
  }
  void vline(int x, int y0, int y1, Rgb c) {
    for (int y = std::min(y0, y1); y <= std::max(y0, y1); ++y) set(x, y, c);
  }
  void rect(int x0, int y0, int x1, int y1, Rgb c) {
    for (int y = std::min(y0, y1); y <= std::max(y0, y1); ++y) hline(x0, x1, y, c);
  }
  void line(int x0, int y0, int x1, int y1, Rgb c) {  // Bresenham, 2 px thick
    const int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0);
    const int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    for (;;) {
      set(x0, y0, c);
      set(x0, y0 + 1, c);
      set(x0 + 1, y0, c);
      if (x0 == x1 && y0 == y1) break;
      const int e2 = 2 * err;
      if (e2 >= dy) {
        err += dy;
        x0 += sx;
      }
      if (e2 <= dx) {
        err += dx;
        y0 += sy;
      }
    }
  }
  // Text with its top-left corner at (x, y); each glyph cell is 6·scale wide, 8·scale high.
  void text(int x, int y, const std::string& s, int scale, Rgb c) {
    for (char ch : s) {
      const auto& rows = glyph_of(ch);
      for (int r = 0; r < 7; ++r)
        for (int col = 0; col < 5; ++col)
          if (rows[static_cast<size_t>(r)] & (0x10 >> col))
            for (int dy = 0; dy < scale; ++dy)
              for (int dx = 0; dx < scale; ++dx) set(x + col * scale + dx, y + r * scale + dy, c);
      x += 6 * scale;
    }
  }
  static int text_width(const std::string& s, int scale) {
    return static_cast<int>(s.size()) * 6 * scale - scale;
  }
};

// libpng writes into a string (then written atomically).
void png_append(png_structp png, png_bytep data, png_size_t n) {
  auto* out = static_cast<std::string*>(png_get_io_ptr(png));
  out->append(reinterpret_cast<const char*>(data), n);
}
void png_flush_noop(png_structp) {}

std::string encode_png(const Image& img) {
  std::string out;
  std::vector<png_bytep> rows(static_cast<size_t>(img.h));
  for (int y = 0; y < img.h; ++y)
    rows[static_cast<size_t>(y)] =
        const_cast<png_bytep>(&img.px[static_cast<size_t>(y) * static_cast<size_t>(img.w) * 3]);
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  TQ_CHECK(png != nullptr, "[tqplot] png_create_write_struct failed");
  png_infop info = png_create_info_struct(png);
  if (info == nullptr) {
    png_destroy_write_struct(&png, nullptr);
    TQ_THROW("[tqplot] png_create_info_struct failed");
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    TQ_THROW("[tqplot] libpng failed while encoding a {}x{} image", img.w, img.h);
  }
  png_set_write_fn(png, &out, png_append, png_flush_noop);
  png_set_IHDR(png, info, static_cast<png_uint_32>(img.w), static_cast<png_uint_32>(img.h), 8,
               PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  png_write_image(png, rows.data());
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return out;
}

// ---- axes ----

struct Ticks {
  std::vector<double> at;
  double step = 1;
};

Ticks nice_ticks(double lo, double hi, int target, bool integer) {
  Ticks t;
  const double raw = (hi - lo) / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double r = raw / mag;
  t.step = (r < 1.5 ? 1 : r < 3 ? 2 : r < 7 ? 5 : 10) * mag;
  if (integer) t.step = std::max(1.0, std::round(t.step));
  for (double v = std::ceil(lo / t.step) * t.step; v <= hi + t.step * 1e-9; v += t.step)
    t.at.push_back(std::abs(v) < t.step * 1e-9 ? 0.0 : v);
  return t;
}

// One format per axis: exponents when the largest tick is ≥ 1e5 or < 1e-2, else fixed decimals
// matching the tick step.
bool axis_uses_exp(const Ticks& t) {
  double m = 0;
  for (double v : t.at) m = std::max(m, std::abs(v));
  return m >= 1e5 || (m > 0 && m < 1e-2);
}

std::string tick_label(double v, double step, bool exp) {
  char buf[64];
  if (v == 0) return "0";
  if (exp) {
    std::snprintf(buf, sizeof buf, "%.2e", v);
  } else {
    const int dec = std::clamp(static_cast<int>(-std::floor(std::log10(step) + 1e-9)), 0, 6);
    std::snprintf(buf, sizeof buf, "%.*f", dec, v);
  }
  return buf;
}

struct Frame {
  static constexpr int W = 800, H = 480, L = 90, R = 20, T = 40, B = 50;
  double x0, x1, y0, y1;
  int px(double x) const {
    return L + static_cast<int>(std::lround((x - x0) / (x1 - x0) * (W - L - R)));
  }
  int py(double y) const {
    return H - B - static_cast<int>(std::lround((y - y0) / (y1 - y0) * (H - T - B)));
  }
};

// Grid, axes, tick labels, title and x label.
void draw_frame(Image& img, const Frame& f, const std::string& title, const std::string& xlabel,
                bool x_integer) {
  const Ticks xt = nice_ticks(f.x0, f.x1, 8, x_integer), yt = nice_ticks(f.y0, f.y1, 6, false);
  for (double v : yt.at) {
    const int y = f.py(v);
    img.hline(Frame::L, Frame::W - Frame::R, y, kGrid);
    const std::string s = tick_label(v, yt.step, axis_uses_exp(yt));
    img.text(Frame::L - 6 - Image::text_width(s, 1), y - 3, s, 1, kBlack);
    img.hline(Frame::L - 4, Frame::L, y, kBlack);
  }
  for (double v : xt.at) {
    const int x = f.px(v);
    img.vline(x, Frame::T, Frame::H - Frame::B, kGrid);
    const std::string s = tick_label(v, xt.step, axis_uses_exp(xt));
    img.text(x - Image::text_width(s, 1) / 2, Frame::H - Frame::B + 8, s, 1, kBlack);
    img.vline(x, Frame::H - Frame::B, Frame::H - Frame::B + 4, kBlack);
  }
  img.hline(Frame::L, Frame::W - Frame::R, Frame::H - Frame::B, kBlack);
  img.vline(Frame::L, Frame::T, Frame::H - Frame::B, kBlack);
  int scale = 2;
  if (Image::text_width(title, scale) > Frame::W - 20) scale = 1;
  std::string t = title;
  if (Image::text_width(t, scale) > Frame::W - 20)
    t = t.substr(0, static_cast<size_t>((Frame::W - 20) / 6));
  img.text((Frame::W - Image::text_width(t, scale)) / 2, 12, t, scale, kBlack);
  img.text(Frame::L + (Frame::W - Frame::L - Frame::R - Image::text_width(xlabel, 1)) / 2,
           Frame::H - 18, xlabel, 1, kBlack);
}

std::pair<double, double> padded(double lo, double hi) {
  if (hi <= lo) {
    const double pad = std::abs(lo) > 0 ? 0.1 * std::abs(lo) : 1.0;
    return {lo - pad, hi + pad};
  }
  const double pad = 0.05 * (hi - lo);
  return {lo - pad, hi + pad};
}

Image plot_series(const std::string& key, std::vector<std::pair<int64_t, double>> pts) {
  std::stable_sort(pts.begin(), pts.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  double ylo = pts.front().second, yhi = ylo;
  for (const auto& p : pts) {
    ylo = std::min(ylo, p.second);
    yhi = std::max(yhi, p.second);
  }
  Frame f{};
  f.x0 = static_cast<double>(pts.front().first);
  f.x1 = static_cast<double>(pts.back().first);
  if (f.x1 <= f.x0) {
    f.x0 -= 1;
    f.x1 += 1;
  }
  std::tie(f.y0, f.y1) = padded(ylo, yhi);
  Image img(Frame::W, Frame::H);
  draw_frame(img, f, key, "step", true);
  for (size_t i = 1; i < pts.size(); ++i)
    img.line(f.px(static_cast<double>(pts[i - 1].first)), f.py(pts[i - 1].second),
             f.px(static_cast<double>(pts[i].first)), f.py(pts[i].second), kBlue);
  if (pts.size() <= 60)  // markers where points are few (sparse keys such as valid_loss)
    for (const auto& p : pts)
      img.rect(f.px(static_cast<double>(p.first)) - 2, f.py(p.second) - 2,
               f.px(static_cast<double>(p.first)) + 2, f.py(p.second) + 2, kBlue);
  return img;
}

Image plot_hist(const std::string& key, int64_t step, const std::vector<double>& counts,
                double hist_max) {
  const size_t n = counts.size();
  const bool known = hist_max > 0;
  Frame f{};
  f.x0 = 0;
  f.x1 = known ? hist_max : static_cast<double>(n);
  double top = 0;
  for (double c : counts) top = std::max(top, c);
  f.y0 = 0;
  f.y1 = top > 0 ? top * 1.05 : 1.0;
  Image img(Frame::W, Frame::H);
  draw_frame(img, f, key + " (step " + std::to_string(step) + ")",
             known ? "|W|/DELTA (LAST BIN: OVERFLOW)" : "bin", !known);
  for (size_t b = 0; b < n; ++b) {
    const double bw = (f.x1 - f.x0) / static_cast<double>(n);
    const int xa = f.px(static_cast<double>(b) * bw) + 1,
              xb = f.px(static_cast<double>(b + 1) * bw) - 1;
    if (counts[b] > 0) img.rect(xa, f.py(counts[b]), std::max(xa, xb), f.py(0) - 1, kBar);
  }
  if (known && hist_max > 1) {  // the dead-zone edge
    const int x = f.px(1.0);
    img.vline(x, Frame::T, Frame::H - Frame::B, kRed);
    img.vline(x + 1, Frame::T, Frame::H - Frame::B, kRed);
    img.text(x + 5, Frame::T + 4, "R = 1", 1, kRed);
  }
  return img;
}

// ---- metrics ----

struct Hist {
  int64_t step = 0;
  std::vector<double> counts;
  double hist_max = 0;  // 0: unknown
};

struct Metrics {
  std::map<std::string, std::vector<std::pair<int64_t, double>>> series;
  std::map<std::string, Hist> hists;  // latest per key
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

void flatten(const Json& j, const std::string& prefix, std::map<std::string, const Json*>& out) {
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string k = prefix.empty() ? it.key() : prefix + "." + it.key();
    if (it->is_object()) {
      flatten(*it, k, out);
    } else {
      out[k] = &*it;
    }
  }
}

Metrics read_metrics(const std::string& path) {
  std::ifstream in(path);
  TQ_CHECK(in.good(), "[tqplot] cannot open metrics file {}", path);
  Metrics m;
  std::string line;
  int64_t lineno = 0, records = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    Json j;
    try {
      j = Json::parse(line);
    } catch (const std::exception& e) {
      TQ_THROW("[tqplot] {}:{}: not valid JSON: {}", path, lineno, e.what());
    }
    TQ_CHECK(j.is_object(), "[tqplot] {}:{}: expected a JSON object per line, got {}", path, lineno,
             tq::json_kind(j));
    // Event lines ({"event": "start" | "interrupted", ...}) mark the run's history; they are not series.
    if (j.contains("event")) continue;
    TQ_CHECK(j.contains("step"),
             "[tqplot] {}:{}: missing field 'step' — hint: every metrics line carries the step",
             path, lineno);
    const Json& s = j["step"];
    TQ_CHECK(s.is_number_integer(), "[tqplot] {}:{}: field 'step' must be an integer, got {}", path,
             lineno, tq::json_kind(s));
    const int64_t step = s.get<int64_t>();
    std::map<std::string, const Json*> flat;
    flatten(j, "", flat);
    for (const auto& [k, v] : flat) {
      if (k == "step") continue;
      if (v->is_number()) {
        const double x = v->get<double>();
        if (std::isfinite(x)) m.series[k].emplace_back(step, x);
      } else if (v->is_array() && ends_with(k, "hist") && !v->empty()) {
        Hist h;
        h.step = step;
        for (size_t i = 0; i < v->size(); ++i) {
          const Json& c = (*v)[i];
          TQ_CHECK(c.is_number(),
                   "[tqplot] {}:{}: histogram '{}' entry {} is {}, expected a number", path, lineno,
                   k, i, tq::json_kind(c));
          h.counts.push_back(c.get<double>());
        }
        // hist_max: the nearest "hist_max" among the enclosing objects
        std::string p = k;
        while (true) {
          const size_t dot = p.rfind('.');
          p = dot == std::string::npos ? std::string() : p.substr(0, dot);
          const auto it = flat.find(p.empty() ? "hist_max" : p + ".hist_max");
          if (it != flat.end() && it->second->is_number()) {
            h.hist_max = it->second->get<double>();
            break;
          }
          if (p.empty()) break;
        }
        m.hists[k] = std::move(h);
      }
    }
    ++records;
  }
  TQ_CHECK(records > 0, "[tqplot] {}: no metrics lines", path);
  return m;
}

std::string file_stem(const std::string& key) {
  std::string s = key;
  for (char& c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) c = '_';
  return s;
}

std::vector<std::string> split_keys(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string k;
  while (std::getline(ss, k, ','))
    if (!k.empty()) out.push_back(k);
  return out;
}

int run(const std::string& metrics, const std::string& out_dir, const std::string& keys_arg) {
  const Metrics m = read_metrics(metrics);
  std::vector<std::string> keys;
  if (keys_arg
          .empty()) {  // every numeric key but the bookkeeping ones (a nested step, hist_max, ...)
    for (const auto& [k, v] : m.series) {
      const size_t dot = k.rfind('.');
      const std::string last = dot == std::string::npos ? k : k.substr(dot + 1);
      if (dot != std::string::npos &&
          (last == "step" || last == "hist_max" || last == "reentry_window"))
        continue;
      keys.push_back(k);
    }
  } else {
    for (const std::string& k : split_keys(keys_arg)) {
      if (m.series.count(k) == 0) {
        std::string avail;
        for (const auto& [a, v] : m.series) avail += (avail.empty() ? "" : ", ") + a;
        TQ_THROW("[tqplot] key '{}' has no numeric values in {} — available: {}", k, metrics,
                 avail);
      }
      keys.push_back(k);
    }
  }
  TQ_CHECK(!keys.empty() || !m.hists.empty(),
           "[tqplot] {}: nothing to plot (no numeric keys besides step)", metrics);
  fs::create_directories(out_dir);
  int written = 0;
  for (const std::string& k : keys) {
    const std::string path = (fs::path(out_dir) / (file_stem(k) + ".png")).string();
    tq::write_file_atomic(path, encode_png(plot_series(k, m.series.at(k))));
    std::printf("%s\n", path.c_str());
    ++written;
  }
  for (const auto& [k, h] : m.hists) {
    const std::string path = (fs::path(out_dir) / (file_stem(k) + ".png")).string();
    tq::write_file_atomic(path, encode_png(plot_hist(k, h.step, h.counts, h.hist_max)));
    std::printf("%s\n", path.c_str());
    ++written;
  }
  std::fprintf(stderr, "tqplot: %d plots in %s\n", written, out_dir.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "tqplot: PNG plots of a libtequila metrics.jsonl (one per key, plus |w|/Delta histograms)"};
  std::string metrics, out_dir, keys;
  app.add_option("metrics", metrics,
                 "metrics file, one JSON object per line with an integer \"step\"")
      ->required();
  app.add_option("--out", out_dir, "output directory (created)")->required();
  app.add_option("--keys", keys,
                 "comma-separated keys to plot (default: every numeric key; nested with dots)");
  CLI11_PARSE(app, argc, argv);
  try {
    return run(metrics, out_dir, keys);
  } catch (const tq::Error& e) {
    std::fprintf(stderr, "tqplot: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tqplot: %s\n", e.what());
    return 1;
  }
}
