# libtequila.so (target tequila) and libtequila.a (target tequila_static) from the same objects,
# installed with headers under include/tequila/<folder>/ and a CMake package config.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(TQ_PUBLIC_DEPS OpenMP::OpenMP_CXX Threads::Threads spdlog::spdlog nlohmann_json::nlohmann_json)
set(TQ_PRIVATE_DEPS Eigen3::Eigen DNNL::dnnl PkgConfig::PCRE2 PkgConfig::SENTENCEPIECE yaml-cpp)
if(MPI_CXX_FOUND)
  list(APPEND TQ_PUBLIC_DEPS MPI::MPI_CXX)
endif()

add_library(tequila SHARED $<TARGET_OBJECTS:tequila_obj>)
add_library(tequila_static STATIC $<TARGET_OBJECTS:tequila_obj>)
set_target_properties(tequila_static PROPERTIES OUTPUT_NAME tequila)
set_target_properties(tequila PROPERTIES VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR})
foreach(t tequila tequila_static)
  target_include_directories(${t} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}/tequila>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_compile_definitions(${t} PUBLIC
    $<$<CONFIG:Debug>:SPDLOG_ACTIVE_LEVEL=SPDLOG_LEVEL_TRACE>
    $<$<NOT:$<CONFIG:Debug>>:SPDLOG_ACTIVE_LEVEL=SPDLOG_LEVEL_INFO>)
  target_compile_features(${t} PUBLIC cxx_std_17)
endforeach()
target_link_libraries(tequila PUBLIC ${TQ_PUBLIC_DEPS} PRIVATE ${TQ_PRIVATE_DEPS})
# A static archive carries no link dependencies of its own: its users need them all.
target_link_libraries(tequila_static PUBLIC ${TQ_PUBLIC_DEPS} ${TQ_PRIVATE_DEPS})
add_library(tequila::tequila ALIAS tequila)
add_library(tequila::tequila_static ALIAS tequila_static)

foreach(dir core autograd nn quant data train infer)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/${dir}/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/tequila/${dir}
          FILES_MATCHING PATTERN "*.h")
endforeach()
install(TARGETS tequila tequila_static EXPORT tequilaTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(EXPORT tequilaTargets NAMESPACE tequila:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/tequila)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/tequilaConfig.cmake.in
  ${PROJECT_BINARY_DIR}/tequilaConfig.cmake INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/tequila)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/tequilaConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/tequilaConfig.cmake ${PROJECT_BINARY_DIR}/tequilaConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/tequila)
