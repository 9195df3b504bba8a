# tqplot end to end. Included by tests/CMakeLists.txt, this file registers the test `tqplot_cli`, which
# runs the same file in script mode (-P): it writes a metrics.jsonl like the trainer's (loss and lr every
# 10 steps, sparse valid_loss, a nested "diagnostics" object with a |w|/Δ histogram every 100 steps),
# runs tqplot, and checks that each expected PNG exists and starts with the PNG signature and an IHDR
# chunk of 800×480. Then bad input: a truncated line and a non-integer step must fail naming FILE:LINE,
# and an unknown --keys entry must fail naming the key.
if(NOT CMAKE_SCRIPT_MODE_FILE)
  if(TARGET tqplot)
    add_test(NAME tqplot_cli
             COMMAND ${CMAKE_COMMAND} -DTQPLOT=$<TARGET_FILE:tqplot> -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/plot_cli
                     -P ${CMAKE_CURRENT_LIST_FILE})
    set_tests_properties(tqplot_cli PROPERTIES LABELS "apps;cli")
  endif()
  return()
endif()

file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
set(metrics "")
foreach(s RANGE 0 300 10)
  math(EXPR loss_milli "4000 - ${s} * 6")
  math(EXPR lr_micro "${s} * 3")
  set(line "{\"step\": ${s}, \"loss\": ${loss_milli}e-3, \"lr\": ${lr_micro}e-6, \"tokens_per_s\": 1234.5")
  math(EXPR m100 "${s} % 100")
  if(m100 EQUAL 0)
    set(hist "")
    foreach(b RANGE 0 39)
      math(EXPR c "(${b} - 8) * (${b} - 8)")
      math(EXPR c "1000 - ${c}")
      if(c LESS 0)
        set(c 0)
      endif()
      string(APPEND hist "${c},")
    endforeach()
    string(REGEX REPLACE ",$" "" hist "${hist}")
    math(EXPR dead "310 + ${s} / 10")
    string(APPEND line ", \"diagnostics\": {\"step\": ${s}, \"dead_fraction\": 0.${dead}, \"hist_max\": 4.0, "
                       "\"hist\": [${hist}], \"q_proj\": {\"dead_fraction\": 0.${dead}, \"escape_rate\": null}}")
  endif()
  string(APPEND metrics "${line}}\n")
  math(EXPR m150 "${s} % 150")
  if(m150 EQUAL 0)
    math(EXPR v "3900 - ${s} * 5")
    string(APPEND metrics "{\"step\": ${s}, \"valid_loss\": ${v}e-3}\n")
  endif()
endforeach()
file(WRITE ${WORK_DIR}/metrics.jsonl "${metrics}")

execute_process(COMMAND ${TQPLOT} ${WORK_DIR}/metrics.jsonl --out ${WORK_DIR}/plots
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc)
  message(FATAL_ERROR "tqplot failed: rc=${rc}\nstdout: ${out}\nstderr: ${err}")
endif()

function(check_png path)
  if(NOT EXISTS ${path})
    message(FATAL_ERROR "missing plot ${path}")
  endif()
  file(SIZE ${path} size)
  if(size LESS 200)
    message(FATAL_ERROR "${path}: only ${size} bytes")
  endif()
  # signature (8 bytes), IHDR length 13, "IHDR", width 800 (0x320), height 480 (0x1e0)
  file(READ ${path} head LIMIT 24 HEX)
  string(SUBSTRING "${head}" 0 16 sig)
  string(SUBSTRING "${head}" 16 16 ihdr)
  string(SUBSTRING "${head}" 32 16 dims)
  if(NOT sig STREQUAL "89504e470d0a1a0a" OR NOT ihdr STREQUAL "0000000d49484452" OR
     NOT dims STREQUAL "00000320000001e0")
    message(FATAL_ERROR "${path}: not an 800x480 PNG (first 24 bytes ${head})")
  endif()
  # ends with the IEND chunk
  math(EXPR off "${size} - 8")
  file(READ ${path} tail OFFSET ${off} HEX)
  if(NOT tail STREQUAL "49454e44ae426082")
    message(FATAL_ERROR "${path}: no IEND chunk at the end (${tail})")
  endif()
endfunction()

foreach(key loss lr tokens_per_s valid_loss diagnostics.dead_fraction diagnostics.q_proj.dead_fraction
            diagnostics.hist)
  check_png(${WORK_DIR}/plots/${key}.png)
endforeach()
foreach(skipped diagnostics.step diagnostics.hist_max diagnostics.q_proj.escape_rate)
  if(EXISTS ${WORK_DIR}/plots/${skipped}.png)
    message(FATAL_ERROR "${skipped}.png should not be written (bookkeeping key or no numeric values)")
  endif()
endforeach()

# --keys selects the plots
execute_process(COMMAND ${TQPLOT} ${WORK_DIR}/metrics.jsonl --out ${WORK_DIR}/sel --keys loss,valid_loss
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc OR EXISTS ${WORK_DIR}/sel/lr.png)
  message(FATAL_ERROR "tqplot --keys loss,valid_loss: rc=${rc}, lr.png written anyway?\n${err}")
endif()
check_png(${WORK_DIR}/sel/valid_loss.png)

# errors name the file and the line
file(WRITE ${WORK_DIR}/bad.jsonl "{\"step\": 1, \"loss\": 2.0}\n\n{\"step\": 2, \"loss\": \n")
execute_process(COMMAND ${TQPLOT} ${WORK_DIR}/bad.jsonl --out ${WORK_DIR}/bad
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc OR NOT err MATCHES "bad.jsonl:3: not valid JSON")
  message(FATAL_ERROR "a truncated line must fail naming bad.jsonl:3: rc=${rc} ${err}")
endif()
file(WRITE ${WORK_DIR}/bad2.jsonl "{\"step\": 1, \"loss\": 2.0}\n{\"loss\": 1.0}\n")
execute_process(COMMAND ${TQPLOT} ${WORK_DIR}/bad2.jsonl --out ${WORK_DIR}/bad
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc OR NOT err MATCHES "bad2.jsonl:2: missing field 'step'")
  message(FATAL_ERROR "a line without step must fail naming bad2.jsonl:2: rc=${rc} ${err}")
endif()
execute_process(COMMAND ${TQPLOT} ${WORK_DIR}/metrics.jsonl --out ${WORK_DIR}/bad --keys loss,no_such_key
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc OR NOT err MATCHES "no_such_key")
  message(FATAL_ERROR "an unknown --keys entry must fail naming it: rc=${rc} ${err}")
endif()
message(STATUS "tqplot: all plots valid; errors name file:line")
